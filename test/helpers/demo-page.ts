import type { Page } from 'playwright-core';

/** How long a DOM condition may take before the test fails (all waits are for conditions, never fixed sleeps). */
/** Generous: the browser tests share two cores with the fault suite in CI. */
export const DOM_TIMEOUT_MS = 15_000;

/** Joins the chat of the demo page (web/chat.js) as `name` in `room` and waits for the session view. */
export async function joinChat(page: Page, name: string, room: string): Promise<void> {
  // The page's modules must be running first, or the form would be filled before they set it up.
  await page.waitForFunction(() => (window as unknown as { heraldDemo?: { chat?: unknown } }).heraldDemo?.chat !== undefined, null, { timeout: DOM_TIMEOUT_MS });
  await page.fill('#chat-name', name);
  await page.fill('#chat-room', room);
  await page.click('#chat-join button[type=submit]');
  await page.locator('#chat-session').waitFor({ state: 'visible', timeout: DOM_TIMEOUT_MS });
}

export async function sendChat(page: Page, text: string): Promise<void> {
  await page.fill('#chat-text', text);
  await page.press('#chat-text', 'Enter');
}

export async function waitForChatMessage(page: Page, text: string): Promise<void> {
  await page.locator('#chat-messages .message .text', { hasText: text }).first().waitFor({ timeout: DOM_TIMEOUT_MS });
}

/** Waits until the "Online" list holds exactly these names (in any order). */
export async function waitForRoster(page: Page, names: readonly string[]): Promise<void> {
  await page.waitForFunction(
    (expected) => {
      const shown = Array.from(document.querySelectorAll('#chat-online li .name')).map((el) => el.textContent).sort();
      return JSON.stringify(shown) === JSON.stringify([...expected].sort());
    },
    names,
    { timeout: DOM_TIMEOUT_MS },
  );
}

export async function waitForStatus(page: Page, selector: '#chat-status' | '#orders-status', text: string): Promise<void> {
  await page.waitForFunction(([sel, expected]) => document.querySelector(sel!)?.textContent === expected, [selector, text] as const, {
    timeout: DOM_TIMEOUT_MS,
  });
}

export interface DashboardState {
  connection: string;
  events: number;
  resets: number;
  gaps: number;
  reconnects: number;
  positions: string[];
  lastPosition?: string;
}

export interface ChatState {
  connection: string;
  online: string[];
  received: string[];
  resets: number;
}

/** The dashboard's live state (`window.heraldDemo.orders`). */
export function dashboardState(page: Page): Promise<DashboardState> {
  return page.evaluate(() => JSON.parse(JSON.stringify((window as unknown as { heraldDemo: { orders: unknown } }).heraldDemo.orders)));
}

export function chatState(page: Page): Promise<ChatState> {
  return page.evaluate(() => JSON.parse(JSON.stringify((window as unknown as { heraldDemo: { chat: unknown } }).heraldDemo.chat)));
}

/** Waits until the dashboard has applied at least `count` order updates. */
export async function waitForOrderEvents(page: Page, count: number): Promise<void> {
  await page.waitForFunction(
    (n) => ((window as unknown as { heraldDemo?: { orders?: { events: number } } }).heraldDemo?.orders?.events ?? 0) >= n,
    count,
    { timeout: DOM_TIMEOUT_MS },
  );
}

/** Throws unless the positions (one channel, "offset:epoch") are consecutive offsets of one epoch, each once. */
export function assertContiguous(positions: readonly string[], what: string): void {
  const parsed = positions.map((p) => {
    const match = /^(\d+):(.+)$/.exec(p);
    if (!match) throw new Error(`${what}: unreadable position ${p}`);
    return { offset: Number(match[1]), epoch: match[2]! };
  });
  const epochs = new Set(parsed.map((p) => p.epoch));
  if (epochs.size !== 1) throw new Error(`${what}: ${epochs.size} epochs in ${positions.join(', ')}`);
  const offsets = parsed.map((p) => p.offset).sort((a, b) => a - b);
  for (let i = 1; i < offsets.length; i++) {
    if (offsets[i] !== offsets[i - 1]! + 1) throw new Error(`${what}: offsets not contiguous at ${offsets[i - 1]} → ${offsets[i]} (${offsets.join(',')})`);
  }
}
