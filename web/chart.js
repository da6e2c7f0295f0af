// A bar chart drawn by hand into an inline SVG: no library, no canvas scaling issues.
const SVG_NS = 'http://www.w3.org/2000/svg';
const WIDTH = 480;
const HEIGHT = 140;
const TOP_PADDING = 10;
const GRID_LINES = 3;

/**
 * Draws `values` (oldest first) as bars filling the chart's viewBox. The last
 * bar is the bucket still filling, drawn lighter. Returns the scale's maximum.
 */
export function drawBars(svg, values) {
  const max = niceCeiling(Math.max(0, ...values));
  const slot = WIDTH / values.length;
  const gap = Math.min(3, slot * 0.2);
  const children = [];
  for (let i = 1; i <= GRID_LINES; i++) {
    const y = TOP_PADDING + ((HEIGHT - TOP_PADDING) * (i - 1)) / GRID_LINES;
    children.push(element('line', { class: 'grid', x1: 0, x2: WIDTH, y1: y, y2: y }));
  }
  values.forEach((value, i) => {
    if (value <= 0 || max === 0) return;
    const height = Math.max(1.5, ((HEIGHT - TOP_PADDING) * value) / max);
    children.push(
      element('rect', {
        class: i === values.length - 1 ? 'bar current' : 'bar',
        x: i * slot + gap / 2,
        y: HEIGHT - height,
        width: slot - gap,
        height,
        rx: 1.5,
      }),
    );
  });
  svg.replaceChildren(...children);
  return max;
}

function element(name, attributes) {
  const el = document.createElementNS(SVG_NS, name);
  for (const [key, value] of Object.entries(attributes)) el.setAttribute(key, String(value));
  return el;
}

/** 1, 2, 5 × 10^n at or above `value`, so the scale does not jitter with every order. */
function niceCeiling(value) {
  if (value <= 0) return 0;
  const magnitude = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 5, 10]) if (value <= step * magnitude) return step * magnitude;
  return 10 * magnitude;
}
