import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import type { Browser } from 'playwright-core';
import { assertNoConsoleErrors, launchChromium, skipWithoutChromium, WatchedPage, withScreenshotsOnFailure } from '../helpers/browser.js';
import { assertContiguous, dashboardState, DOM_TIMEOUT_MS, joinChat, waitForChatMessage, waitForOrderEvents, waitForStatus } from '../helpers/demo-page.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

const CURL = ['/usr/bin/curl', '/bin/curl'].find((path) => existsSync(path));

/**
 * Opening a page costs about a second of Chromium's time, so the tests share
 * two: `viewer` only looks (load, accessibility, dashboard, narrow layout) and
 * `user` types (keyboard, publish box). Each test leaves its page usable.
 */
describe('the demo page in Chromium (issue 7)', { skip: skipWithoutChromium }, () => {
  let server: TestServer;
  let browser: Browser;
  let viewer: WatchedPage;
  let user: WatchedPage;

  before(async () => {
    server = await startTestServer({ demo: true });
    browser = await launchChromium();
    [viewer, user] = await Promise.all([openDemo('viewer'), openDemo('user')]);
  });

  after(async () => {
    await browser?.close();
    await server?.stop();
  });

  async function openDemo(label: string): Promise<WatchedPage> {
    const watched = await WatchedPage.open(browser, label);
    const response = await watched.page.goto(`${server.url}/`);
    assert.equal(response?.status(), 200);
    return watched;
  }

  it('serves GET / with its stylesheet, scripts and /herald.js, and loads without a console error', async (t) => {
    const demo = viewer;
    await withScreenshotsOnFailure(t.name, [demo], async () => {
      const { page } = demo;
      assert.equal(await page.title(), 'Herald — live demo');
      await waitForStatus(page, '#orders-status', 'live');
      // The chat module (and so /herald.js) loaded: the join form is live, not the "client unavailable" state.
      await page.waitForFunction(() => (window as unknown as { heraldDemo: { chat?: unknown } }).heraldDemo.chat !== undefined, null, { timeout: DOM_TIMEOUT_MS });
      assert.equal(await page.textContent('#chat-status'), 'not joined');
      for (const path of ['/demo.css', '/app.js', '/chat.js', '/dashboard.js', '/publish.js', '/herald.js', '/favicon.svg']) {
        const response = await fetch(server.url + path);
        assert.equal(response.status, 200, path);
      }
      assertNoConsoleErrors([demo]);
    });
  });

  it('every form control has a label; messages are announced (role=log, aria-live); statuses are role=status', async (t) => {
    const demo = viewer;
    await withScreenshotsOnFailure(t.name, [demo], async () => {
      const unlabeled = await demo.page.evaluate(() =>
        Array.from(document.querySelectorAll('input, textarea, select'))
          .filter((el) => (el as HTMLInputElement).labels?.length === 0 && !el.getAttribute('aria-label'))
          .map((el) => el.id || el.outerHTML),
      );
      assert.deepEqual(unlabeled, []);
      const log = demo.page.locator('#chat-messages');
      assert.equal(await log.getAttribute('role'), 'log');
      assert.equal(await log.getAttribute('aria-live'), 'polite');
      assert.equal(await demo.page.getAttribute('#chat-status', 'role'), 'status');
      assert.equal(await demo.page.getAttribute('#orders-status', 'role'), 'status');
      assert.equal(await demo.page.getAttribute('html', 'lang'), 'en');
      assert.ok((await demo.page.getAttribute('#orders-chart', 'aria-label'))!.length > 0, 'the chart has a text alternative');
      assertNoConsoleErrors([demo]);
    });
  });

  it('works from the keyboard alone: Tab to the name, type, Enter to join, Enter to send', async (t) => {
    const demo = user;
    await withScreenshotsOnFailure(t.name, [demo], async () => {
      const { page } = demo;
      await page.waitForFunction(() => (window as unknown as { heraldDemo: { chat?: unknown } }).heraldDemo.chat !== undefined, null, { timeout: DOM_TIMEOUT_MS });
      // Skip link first, then the header links, then the name field.
      await page.keyboard.press('Tab');
      assert.equal(await page.evaluate(() => document.activeElement?.className), 'skip-link');
      let guard = 0;
      while ((await page.evaluate(() => document.activeElement?.id)) !== 'chat-name' && guard++ < 10) await page.keyboard.press('Tab');
      assert.equal(await page.evaluate(() => document.activeElement?.id), 'chat-name');
      await page.keyboard.press('Control+A');
      await page.keyboard.type('Keyboard Kim');
      await page.keyboard.press('Enter');
      await page.locator('#chat-session').waitFor({ state: 'visible', timeout: DOM_TIMEOUT_MS });
      assert.equal(await page.evaluate(() => document.activeElement?.id), 'chat-text', 'focus moves to the message field');
      await page.keyboard.type('typed without a mouse');
      await page.keyboard.press('Enter');
      await waitForChatMessage(page, 'typed without a mouse');
      assertNoConsoleErrors([demo]);
    });
  });

  it('the dashboard receives order-update events over EventSource and draws them: table, figures, chart', async (t) => {
    const demo = viewer;
    await withScreenshotsOnFailure(t.name, [demo], async () => {
      const { page } = demo;
      await waitForOrderEvents(page, 2);
      await page.locator('#orders-rows tr[data-order]').first().waitFor({ timeout: DOM_TIMEOUT_MS });
      assert.equal(await page.textContent('#orders-status'), 'live');
      assert.ok(Number(await page.textContent('#kpi-orders')) >= 1);
      assert.match((await page.textContent('#kpi-revenue'))!, /€/);
      await page.waitForFunction(() => document.querySelectorAll('#orders-chart rect.bar').length > 0, null, { timeout: DOM_TIMEOUT_MS });
      const state = await dashboardState(page);
      assert.equal(state.resets, 0);
      assert.equal(state.gaps, 0);
      assertContiguous(state.positions, 'orders seen by the page (history back-fill + live)');
      const status = (await page.textContent('#orders-rows tr[data-order] .status'))!;
      assert.ok(['placed', 'paid', 'packed', 'shipped', 'delivered', 'cancelled'].includes(status), status);
      assertNoConsoleErrors([demo]);
    });
  });

  it('the publish box shows a working curl command for POST /api/publish and sends one with fetch', async (t) => {
    const demo = user;
    await withScreenshotsOnFailure(t.name, [demo], async () => {
      const { page } = demo;
      if (await page.isVisible('#chat-leave')) await page.click('#chat-leave');
      await joinChat(page, 'Reader', 'publish-box');
      await page.fill('#publish-channel', 'chat:publish-box');
      await page.fill('#publish-event', 'message');
      await page.fill('#publish-data', '{"name":"backend","text":"it\'s from fetch"}');
      const command = (await page.textContent('#curl-command'))!;
      assert.ok(command.startsWith(`curl -X POST ${server.url}/api/publish \\`), command);
      assert.match(command, /-H 'Content-Type: application\/json'/);
      assert.match(command, /"channel": "chat:publish-box"/);

      await page.click('#publish-form button[type=submit]');
      await page.locator('#publish-result', { hasText: 'Published to chat:publish-box at position' }).waitFor({ timeout: DOM_TIMEOUT_MS });
      await waitForChatMessage(page, "it's from fetch");

      // Invalid JSON is refused on the page, with the reason.
      await page.fill('#publish-data', '{nope');
      assert.equal(await page.getAttribute('#publish-data', 'aria-invalid'), 'true');
      assert.equal(await page.isVisible('#publish-data-error'), true);

      if (CURL) {
        // The command as shown (quotes and all) runs in a shell and publishes.
        await page.fill('#publish-data', '{"name":"shell","text":"it\'s from curl"}');
        const shown = (await page.textContent('#curl-command'))!;
        const { stdout } = await promisify(execFile)('/bin/sh', ['-c', `${shown.replace(/^curl /, `${CURL} -s `)}`]);
        assert.match(JSON.parse(stdout).position, /^\d+:/);
        await waitForChatMessage(page, "it's from curl");
      } else {
        t.diagnostic('curl not installed: the shown command was not run');
      }
      assertNoConsoleErrors([demo]);
    });
  });

  it('stacks the demos on a narrow screen without sideways scrolling', async (t) => {
    const demo = viewer;
    await withScreenshotsOnFailure(t.name, [demo], async () => {
      const { page } = demo;
      await page.setViewportSize({ width: 375, height: 800 });
      await waitForOrderEvents(page, 1);
      const layout = await page.evaluate(() => {
        const box = (id: string) => document.getElementById(id)!.getBoundingClientRect();
        return { chat: box('chat').toJSON(), orders: box('orders').toJSON(), publish: box('publish').toJSON(), scrollWidth: document.documentElement.scrollWidth };
      });
      assert.ok(layout.orders.top >= layout.chat.bottom, 'orders below chat');
      assert.ok(layout.publish.top >= layout.orders.bottom, 'publish below orders');
      assert.ok(layout.chat.width > 300 && layout.orders.width > 300, 'each card takes the width');
      assert.ok(layout.scrollWidth <= 375, `no horizontal overflow (scrollWidth ${layout.scrollWidth})`);
      assertNoConsoleErrors([demo]);
    });
    await viewer.page.setViewportSize({ width: 1280, height: 900 });
  });
});
