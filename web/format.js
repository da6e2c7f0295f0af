// Formatting shared by the demo parts.

const euros = new Intl.NumberFormat('en-IE', { style: 'currency', currency: 'EUR' });
const eurosShort = new Intl.NumberFormat('en-IE', { style: 'currency', currency: 'EUR', maximumFractionDigits: 0 });
const clock = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit' });

export const formatMoney = (amount) => euros.format(amount);
export const formatMoneyShort = (amount) => eurosShort.format(amount);
export const formatTime = (date) => clock.format(date);

/** A stable hue per name, so each person keeps one avatar colour on every page. */
export function hueOf(text) {
  let hash = 0;
  for (const char of text) hash = (hash * 31 + char.codePointAt(0)) >>> 0;
  return hash % 360;
}

export function avatar(name) {
  const el = document.createElement('span');
  el.className = 'avatar';
  el.setAttribute('aria-hidden', 'true');
  el.style.setProperty('--hue', String(hueOf(name)));
  el.textContent = (name.trim()[0] ?? '?').toUpperCase();
  return el;
}

/** Positions are opaque on the wire (SPEC §5), but the demo shows their offset and checks for gaps. */
export function parsePosition(text) {
  const match = /^(\d+):(.+)$/.exec(text ?? '');
  return match ? { offset: Number(match[1]), epoch: match[2] } : undefined;
}
