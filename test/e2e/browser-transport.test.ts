import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import type { Browser } from 'playwright-core';
import { MemoryBroker } from '../../src/broker/memory.js';
import { outliving } from '../helpers/broker-doubles.js';
import { assertNoConsoleErrors, BROWSER_NETWORK_ERRORS, launchChromium, skipWithoutChromium, WatchedPage, withScreenshotsOnFailure } from '../helpers/browser.js';
import { DOM_TIMEOUT_MS } from '../helpers/demo-page.js';
import { publish, startTestServer, waitForSubscribers, type TestServer } from '../helpers/server.js';

const CHANNELS = ['t12-0', 't12-1', 't12-2', 't12-3', 't12-4', 't12-5', 't12-6', 't12-7'];
const WS_CHANNEL = 't12-ws';
const FAST = { 'sse-retry': 250, 'shutdown-timeout': 2 } as const;

/** What the test page script keeps on `window.t12`. */
interface PageLog {
  byChannel: Record<string, number[]>;
  ws: number[];
  opens: number;
  resets: number;
  /** True if the browser ever gave up on the EventSource (it does after a 503, a 204 or a wrong type). */
  everClosed: boolean;
  connecting: boolean;
}

async function rejectCount(server: TestServer, reason: string): Promise<number> {
  const metric = await server.ctx.metrics.rejects.get();
  return metric.values.find((v) => v.labels.reason === reason)?.value ?? 0;
}

describe('T12: Herald from a real browser (Chromium)', { skip: skipWithoutChromium }, () => {
  let browser: Browser;

  before(async () => {
    browser = await launchChromium();
  });

  after(async () => {
    await browser?.close();
  });

  it('one multiplexed EventSource (8 channels) and a WebSocket get everything, fetch is not stalled, and a restart resumes with Last-Event-ID, contiguous, never 503/204', async (t) => {
    const broker = new MemoryBroker({ size: 100, ttlSeconds: 300 });
    const first = await startTestServer(FAST, { broker: outliving(broker) });
    let second: TestServer | undefined;
    const watched = await WatchedPage.open(browser, 't12');
    const { page } = watched;
    try {
      await withScreenshotsOnFailure(t.name, [watched], async () => {
        // A bare node has no favicon; the browser's automatic request would log a 404.
        await page.route('**/favicon.ico', (route) => route.fulfill({ status: 204 }));
        await page.goto(`${first.url}/healthz`);
        await page.evaluate(
          async ({ channels, wsChannel }) => {
            const log = { byChannel: {} as Record<string, number[]>, ws: [] as number[], opens: 0, resets: 0, everClosed: false, connecting: false };
            (window as unknown as { t12: typeof log }).t12 = log;
            const source = new EventSource(`/events?${channels.map((c) => `channel=${c}`).join('&')}`);
            source.addEventListener('message', (event) => {
              const data = JSON.parse(event.data) as { ch: string; n: number };
              (log.byChannel[data.ch] ??= []).push(data.n);
            });
            source.addEventListener('reset', () => log.resets++);
            source.addEventListener('open', () => {
              log.opens++;
              log.connecting = false;
            });
            source.addEventListener('error', () => {
              if (source.readyState === EventSource.CLOSED) log.everClosed = true;
              else log.connecting = true;
            });
            const { HeraldClient } = await import('/herald.js' as string);
            const client = new HeraldClient(`ws://${location.host}/ws`);
            const sub = client.subscribe(wsChannel, { onMessage: (m: { data: { n: number } }) => log.ws.push(m.data.n) });
            await sub.ready;
          },
          { channels: CHANNELS, wsChannel: WS_CHANNEL },
        );
        await waitForSubscribers(first, CHANNELS.at(-1)!, 1);

        const publishRound = (server: TestServer, n: number) =>
          Promise.all([...CHANNELS, WS_CHANNEL].map((ch) => publish(server, ch, { ch, n })));
        for (let n = 0; n < 5; n++) await publishRound(first, n);
        await waitForAll(page, 5);

        // Two long-lived connections leave the browser's 6 per host free for ordinary requests.
        const fetchMs = await page.evaluate(async () => {
          const started = performance.now();
          await fetch('/healthz', { cache: 'no-store' });
          return performance.now() - started;
        });
        assert.ok(fetchMs < 500, `fetch took ${fetchMs} ms`);

        const endOutage = watched.expectErrors(BROWSER_NETWORK_ERRORS);
        await first.stop();
        await page.waitForFunction(() => (window as unknown as { t12: PageLog }).t12.connecting, null, { timeout: DOM_TIMEOUT_MS });
        // Published while no server runs: only history brings these.
        for (const ch of [...CHANNELS, WS_CHANNEL]) await broker.publish({ channel: ch, data: JSON.stringify({ ch, n: 5 }) });

        second = await startTestServer({ ...FAST, port: first.port }, { broker: outliving(broker) });
        const lastEventIds: (string | undefined)[] = [];
        second.http.on('request', (req: IncomingMessage) => {
          if (req.url?.startsWith('/events?')) lastEventIds.push(req.headers['last-event-id'] as string | undefined);
        });
        await waitForSubscribers(second, CHANNELS.at(-1)!, 1);
        await waitForSubscribers(second, WS_CHANNEL, 1);
        await publishRound(second, 6);
        await waitForAll(page, 7);
        endOutage();

        const log = await page.evaluate(() => (window as unknown as { t12: PageLog }).t12);
        for (const ch of CHANNELS) assert.deepEqual(log.byChannel[ch], [0, 1, 2, 3, 4, 5, 6], `${ch}: every offset once, in order`);
        assert.deepEqual(log.ws, [0, 1, 2, 3, 4, 5, 6], 'the WebSocket client resumed too');
        assert.equal(log.resets, 0);
        assert.equal(log.everClosed, false, 'the browser never gave up on the stream (no 503/204 during the restart)');
        assert.equal(log.opens, 2);
        assert.equal(lastEventIds.length, 1);
        for (const ch of CHANNELS) assert.match(lastEventIds[0] ?? '', new RegExp(`(^|;)${ch}\\|5:`), `Last-Event-ID resumes ${ch} after offset 5`);
        assertNoConsoleErrors([watched]);
      });
    } finally {
      await watched.close();
      await second?.stop();
      await first.stop();
      await broker.close();
    }
  });

  it('a page from a foreign origin is refused: its WebSocket sees 1006, its credentialed EventSource fails, and the server counts both', async (t) => {
    const server = await startTestServer();
    const foreign = await servePage('<!doctype html><title>elsewhere</title><p>a foreign site</p>');
    const watched = await WatchedPage.open(browser, 'foreign');
    watched.expectErrors(/.*/); // refusals are this page's whole story
    try {
      await withScreenshotsOnFailure(t.name, [watched], async () => {
        const before = { origin: await rejectCount(server, 'origin'), forbidden: await rejectCount(server, 'forbidden') };
        await watched.page.goto(foreign.url);
        const outcome = await watched.page.evaluate(async (herald) => {
          const wsCode = await new Promise<number>((resolve) => {
            const socket = new WebSocket(`${herald.replace(/^http/, 'ws')}/ws`, 'herald.v1');
            socket.onclose = (event) => resolve(event.code);
          });
          const sseState = await new Promise<number>((resolve) => {
            const source = new EventSource(`${herald}/events/secret`, { withCredentials: true });
            source.onopen = () => resolve(-1);
            source.onerror = () => {
              resolve(source.readyState);
              source.close();
            };
          });
          return { wsCode, sseState };
        }, server.url);
        assert.equal(outcome.wsCode, 1006);
        assert.equal(outcome.sseState, 2, 'EventSource CLOSED');
        assert.equal(await rejectCount(server, 'origin'), before.origin + 1);
        assert.equal(await rejectCount(server, 'forbidden'), before.forbidden + 1);
        assert.equal(server.ctx.hub.subscriberCount('secret'), 0);
      });
    } finally {
      await watched.close();
      foreign.server.close();
      await server.stop();
    }
  });
});

async function waitForAll(page: import('playwright-core').Page, count: number): Promise<void> {
  await page.waitForFunction(
    ({ channels, count }) => {
      const log = (window as unknown as { t12: PageLog }).t12;
      return log.ws.length >= count && channels.every((ch) => (log.byChannel[ch]?.length ?? 0) >= count);
    },
    { channels: CHANNELS, count },
    { timeout: DOM_TIMEOUT_MS },
  );
}

async function servePage(html: string): Promise<{ server: Server; url: string }> {
  const server = createServer((_req, res) => res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' }).end(html));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/` };
}
