import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Browser } from 'playwright-core';
import { assertNoConsoleErrors, launchChromium, skipWithoutChromium, WatchedPage, withScreenshotsOnFailure } from '../helpers/browser.js';
import { chatState, joinChat, sendChat, waitForChatMessage, waitForRoster, waitForStatus } from '../helpers/demo-page.js';
import { publish, startTestServer, type TestServer } from '../helpers/server.js';

/** Two pages (a second of Chromium time each) shared by the tests; each test joins its own room. */
describe('the demo chat: two browser pages through Herald (issue 7)', { skip: skipWithoutChromium }, () => {
  let server: TestServer;
  let browser: Browser;
  let alice: WatchedPage;
  let bob: WatchedPage;

  before(async () => {
    server = await startTestServer({ demo: true });
    browser = await launchChromium();
    [alice, bob] = await Promise.all(['alice', 'bob'].map((label) => WatchedPage.open(browser, label)));
    await Promise.all([alice, bob].map((watched) => watched.page.goto(`${server.url}/`)));
  });

  after(async () => {
    await browser?.close();
    await server?.stop();
  });

  async function leaveIfJoined(watched: WatchedPage): Promise<void> {
    if (await watched.page.isVisible('#chat-leave')) await watched.page.click('#chat-leave');
  }

  it('a message sent on one page appears on the other, and presence shows both names on both', async (t) => {
    await withScreenshotsOnFailure(t.name, [alice, bob], async () => {
      await joinChat(alice.page, 'Alice', 'two-pages');
      await joinChat(bob.page, 'Bob', 'two-pages');
      await waitForStatus(alice.page, '#chat-status', 'connected');
      await waitForStatus(bob.page, '#chat-status', 'connected');
      await waitForRoster(alice.page, ['Alice', 'Bob']);
      await waitForRoster(bob.page, ['Alice', 'Bob']);
      assert.equal(await alice.page.textContent('#chat-online-count'), '2');

      await sendChat(alice.page, 'Hello Bob, from Alice');
      await waitForChatMessage(bob.page, 'Hello Bob, from Alice');
      await sendChat(bob.page, 'Hi Alice!');
      await waitForChatMessage(alice.page, 'Hi Alice!');

      // Both pages show the same conversation, in the same order.
      const order = (page: WatchedPage) => page.page.locator('#chat-messages .message .text').allTextContents();
      assert.deepEqual(await order(alice), ['Hello Bob, from Alice', 'Hi Alice!']);
      assert.deepEqual(await order(bob), ['Hello Bob, from Alice', 'Hi Alice!']);
      // Each page marks its own messages.
      assert.deepEqual(await alice.page.locator('#chat-messages .message.mine .text').allTextContents(), ['Hello Bob, from Alice']);

      await bob.page.click('#chat-leave');
      await waitForRoster(alice.page, ['Alice']);
      assertNoConsoleErrors([alice, bob]);
    });
  });

  it('a newcomer sees earlier messages of the room, and messages published over the HTTP API', async (t) => {
    await withScreenshotsOnFailure(t.name, [alice, bob], async () => {
      await Promise.all([leaveIfJoined(alice), leaveIfJoined(bob)]);
      await joinChat(alice.page, 'First', 'history-room');
      await waitForRoster(alice.page, ['First']);
      await sendChat(alice.page, 'said before anyone else came');
      await waitForChatMessage(alice.page, 'said before anyone else came');

      await joinChat(bob.page, 'Late', 'history-room');
      await waitForChatMessage(bob.page, 'said before anyone else came');
      assert.equal(await bob.page.locator('#chat-messages .divider').textContent(), 'Earlier messages');
      await waitForRoster(bob.page, ['First', 'Late']);

      await publish(server, 'chat:history-room', { name: 'backend', text: 'from POST /api/publish' }, 'message');
      await waitForChatMessage(alice.page, 'from POST /api/publish');
      await waitForChatMessage(bob.page, 'from POST /api/publish');
      // The earlier message is shown once, not again when it also arrives live.
      assert.equal(await bob.page.locator('#chat-messages .message .text', { hasText: 'said before anyone else came' }).count(), 1);
      const state = await chatState(bob.page);
      assert.equal(new Set(state.received).size, state.received.length, 'no position shown twice');
      assertNoConsoleErrors([alice, bob]);
    });
  });
});
