// Live orders over Server-Sent Events: the browser's own EventSource, nothing else.
// It reconnects by itself and sends Last-Event-ID, so Herald replays what was missed
// (or says `reset` when it cannot).
import { drawBars } from './chart.js';
import { formatMoney, formatMoneyShort, formatTime, parsePosition } from './format.js';

const STREAM_URL = '/events/orders';
const HISTORY_URL = '/api/history/orders';
const BUCKET_MS = 5000;
const BUCKETS = 24;
const TABLE_ROWS = 8;
/** Orders kept in memory; older ones drop out of the figures. */
const MAX_ORDERS = 500;
/** Positions kept for inspection (`heraldDemo.orders.positions`). */
const MAX_POSITIONS = 1000;
const RESUME_NOTICE_MS = 15_000;
/** How long to wait before re-opening a stream the browser gave up on (it normally never does). */
const REOPEN_AFTER_MS = 3000;

export function mountDashboard(root) {
  const $ = (id) => root.querySelector(`#${id}`);
  const els = {
    status: $('orders-status'),
    notice: $('orders-notice'),
    rows: $('orders-rows'),
    meta: $('orders-meta'),
    chart: $('orders-chart'),
    chartMax: $('chart-max'),
    orders: $('kpi-orders'),
    revenue: $('kpi-revenue'),
    average: $('kpi-average'),
    delivered: $('kpi-delivered'),
  };

  /** What the page saw, for the console and the end-to-end tests. */
  const state = {
    connection: 'connecting',
    events: 0,
    resets: 0,
    gaps: 0,
    reconnects: 0,
    /** Every position applied, in order of arrival (live and back-filled). */
    positions: [],
    lastPosition: undefined,
  };
  const ordersById = new Map();
  /** New orders for the chart: { at, amount }, oldest first. */
  const chartEntries = [];
  let last; // parsed lastPosition
  let lastEventAt = 0;
  let backfill = 'pending'; // → 'running' → 'done'
  let resume; // { from, openedAt, caughtUp, gapsBefore } after a reconnect
  let noticeTimer;
  let flashId;
  let source;

  function open(url) {
    source = new EventSource(url);
    source.addEventListener('open', onOpen);
    source.addEventListener('error', onError);
    source.addEventListener('order-update', onOrderUpdate);
    source.addEventListener('reset', onReset);
  }

  function onOpen() {
    if (state.connection === 'reconnecting') {
      state.reconnects++;
      resume = { from: state.lastPosition, openedAt: Date.now(), caughtUp: 0, gapsBefore: state.gaps };
      showNotice('resume', state.lastPosition ? `Reconnected — resuming after #${offsetText(state.lastPosition)} with Last-Event-ID…` : 'Reconnected.');
    }
    setConnection('live');
  }

  function onError() {
    if (source.readyState === EventSource.CLOSED) {
      // Herald never answers an EventSource with 503/204, but a proxy might; start over ourselves.
      setConnection('reconnecting');
      const since = state.lastPosition ? `?lastEventId=${encodeURIComponent(state.lastPosition)}` : '';
      setTimeout(() => open(STREAM_URL + since), REOPEN_AFTER_MS);
      return;
    }
    setConnection('reconnecting');
  }

  function onOrderUpdate(event) {
    let order;
    try {
      order = JSON.parse(event.data);
    } catch {
      return;
    }
    const position = event.lastEventId;
    checkContinuity(position);
    apply(order, position);
    lastEventAt = Date.now();
    if (resume) trackResume(order);
    if (backfill === 'pending') void backfillFromHistory(parsePosition(position));
    render();
  }

  function onReset(event) {
    let info = {};
    try {
      info = JSON.parse(event.data);
    } catch {}
    state.resets++;
    resume = undefined;
    if (typeof info.position === 'string') remember(info.position);
    const reason = info.reason ? ` (${info.reason})` : '';
    showNotice('reset', `History could not fill the gap${reason}: some updates were missed. The board continues from here.`, false);
    render();
  }

  /**
   * Updates stamped before the stream re-opened were replayed from history;
   * the first one stamped after it means the board is live again.
   */
  function trackResume(order) {
    const at = Date.parse(order?.updatedAt);
    if (Number.isFinite(at) && at < resume.openedAt) {
      resume.caughtUp++;
      return;
    }
    if (state.gaps > resume.gapsBefore) return void (resume = undefined); // the gap notice stays
    const from = resume.from ? ` after #${offsetText(resume.from)}` : '';
    const replayed = resume.caughtUp === 0 ? 'nothing was missed' : `${resume.caughtUp} ${resume.caughtUp === 1 ? 'update' : 'updates'} sent while offline replayed, nothing missed`;
    showNotice('resume', `Resumed${from} with Last-Event-ID — ${replayed}.`);
    resume = undefined;
  }

  /** Detects a silent gap; Herald should never cause one (a gap comes with `reset`). */
  function checkContinuity(positionText) {
    const next = parsePosition(positionText);
    if (next && last && next.epoch === last.epoch && next.offset !== last.offset + 1) {
      state.gaps++;
      showNotice('reset', `Gap detected: expected #${last.offset + 1}, got #${next.offset}.`, false);
    }
    remember(positionText);
  }

  function remember(positionText) {
    state.lastPosition = positionText;
    last = parsePosition(positionText);
  }

  /** Applies an update; an older update of the same order (from back-fill) never overwrites a newer one. */
  function apply(order, positionText) {
    if (!order || typeof order !== 'object' || typeof order.id !== 'string') return;
    state.events++;
    state.positions.push(positionText);
    if (state.positions.length > MAX_POSITIONS) state.positions.splice(0, state.positions.length - MAX_POSITIONS);
    const offset = parsePosition(positionText)?.offset ?? Number.MAX_SAFE_INTEGER;
    const known = ordersById.get(order.id);
    const amount = Number(order.amount);
    const updatedAt = Date.parse(order.updatedAt) || Date.now();
    if (order.status === 'placed' && Number.isFinite(amount)) chartEntries.push({ at: updatedAt, amount });
    if (known && known.offset > offset) return;
    ordersById.delete(order.id); // re-insert, so the oldest-touched order is the one dropped
    ordersById.set(order.id, {
      id: order.id,
      customer: String(order.customer ?? '—'),
      city: typeof order.city === 'string' ? order.city : '',
      amount: Number.isFinite(amount) ? amount : 0,
      status: String(order.status ?? 'unknown'),
      offset,
      updatedAt,
    });
    if (ordersById.size > MAX_ORDERS) ordersById.delete(ordersById.keys().next().value);
    flashId = order.id;
  }

  /**
   * Fills the board with what happened before the page opened. Asked only
   * once the first live update is here, so history covers everything before
   * it: history + live is gap-free without any timing assumptions.
   */
  async function backfillFromHistory(firstLive) {
    backfill = 'running';
    try {
      const response = await fetch(HISTORY_URL);
      if (!response.ok) return;
      const { publications } = await response.json();
      const older = publications.filter((p) => {
        const position = parsePosition(p.position);
        return firstLive && position && position.epoch === firstLive.epoch && position.offset < firstLive.offset;
      });
      const saveFlash = flashId;
      const livePositions = state.positions.splice(0);
      for (const publication of older) apply(publication.data, publication.position);
      state.positions.push(...livePositions);
      flashId = saveFlash;
      chartEntries.sort((a, b) => a.at - b.at);
      render();
    } catch {
      // The board simply starts empty.
    } finally {
      backfill = 'done';
    }
  }

  function render() {
    renderKpis();
    renderRows();
    renderChart();
    renderMeta();
  }

  function renderKpis() {
    let revenue = 0;
    let counted = 0;
    let delivered = 0;
    for (const order of ordersById.values()) {
      if (order.status === 'delivered') delivered++;
      if (order.status === 'cancelled') continue;
      revenue += order.amount;
      counted++;
    }
    els.orders.textContent = String(ordersById.size);
    els.revenue.textContent = formatMoneyShort(revenue);
    els.average.textContent = counted ? formatMoney(revenue / counted) : '—';
    els.delivered.textContent = String(delivered);
  }

  function renderRows() {
    if (ordersById.size === 0) return;
    const latest = [...ordersById.values()].sort((a, b) => b.offset - a.offset).slice(0, TABLE_ROWS);
    els.rows.replaceChildren(
      ...latest.map((order) => {
        const row = document.createElement('tr');
        row.dataset.order = order.id;
        if (order.id === flashId) row.className = 'flash';
        const id = cell('id col-id', order.id);
        const customer = cell('customer', order.customer);
        if (order.city) {
          const city = document.createElement('small');
          city.textContent = order.city;
          customer.append(city);
        }
        const amount = cell('num', formatMoney(order.amount));
        const status = cell('', '');
        const badge = document.createElement('span');
        badge.className = `status status-${order.status.replace(/[^a-z]/g, '')}`;
        badge.textContent = order.status;
        status.append(badge);
        row.append(id, customer, amount, status);
        return row;
      }),
    );
    flashId = undefined;
  }

  function renderChart() {
    const now = Date.now();
    const end = Math.floor(now / BUCKET_MS) * BUCKET_MS + BUCKET_MS;
    const start = end - BUCKETS * BUCKET_MS;
    while (chartEntries.length && chartEntries[0].at < start) chartEntries.shift();
    const values = new Array(BUCKETS).fill(0);
    let total = 0;
    let count = 0;
    for (const entry of chartEntries) {
      const index = Math.floor((entry.at - start) / BUCKET_MS);
      if (index < 0 || index >= BUCKETS || entry.amount <= 0) continue;
      values[index] += entry.amount;
      total += entry.amount;
      count++;
    }
    const max = drawBars(els.chart, values);
    els.chartMax.textContent = max ? `max ${formatMoneyShort(max)} / 5 s` : '';
    els.chart.setAttribute(
      'aria-label',
      count ? `${count} new orders worth ${formatMoneyShort(total)} in the last 2 minutes; ${formatMoneyShort(values[BUCKETS - 1])} in the current 5 seconds.` : 'No new orders in the last 2 minutes yet.',
    );
  }

  function renderMeta() {
    if (state.events === 0) return;
    const ago = Math.max(0, Math.round((Date.now() - lastEventAt) / 1000));
    els.meta.textContent = `${state.events} events · last id ${state.lastPosition ?? '—'} · ${ago === 0 ? 'just now' : `${ago} s ago`} at ${formatTime(new Date(lastEventAt))}`;
  }

  function setConnection(connection) {
    state.connection = connection;
    els.status.dataset.state = connection;
    els.status.textContent = connection === 'live' ? 'live' : connection === 'reconnecting' ? 'reconnecting…' : 'connecting…';
  }

  function showNotice(kind, text, autoHide = true) {
    clearTimeout(noticeTimer);
    els.notice.dataset.kind = kind;
    els.notice.textContent = text;
    els.notice.hidden = false;
    if (autoHide) noticeTimer = setTimeout(() => (els.notice.hidden = true), RESUME_NOTICE_MS);
  }

  // Bars slide left and "x s ago" counts even when no update arrives.
  setInterval(() => {
    renderChart();
    renderMeta();
  }, 1000);

  renderChart();
  open(STREAM_URL);
  return state;
}

function cell(className, text) {
  const td = document.createElement('td');
  if (className) td.className = className;
  td.textContent = text;
  return td;
}

function offsetText(position) {
  return parsePosition(position)?.offset ?? position;
}
