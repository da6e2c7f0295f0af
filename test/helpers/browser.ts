import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Browser, BrowserContext, Page } from 'playwright-core';

/** Debian's Chromium (installed by .ci/run when missing); a test tool never downloads a browser. */
export const CHROMIUM_PATH = '/usr/bin/chromium';
export const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];
/** What Chromium itself logs while a server is away: failed reconnection attempts. */
export const BROWSER_NETWORK_ERRORS = /Failed to load resource: net::ERR_CONNECTION_(REFUSED|RESET)|Failed to load resource: net::ERR_EMPTY_RESPONSE|WebSocket connection to '[^']*' failed/;
/** Where failure screenshots go (gitignored). */
export const RESULTS_DIR = 'test-results';

/** `false` when Chromium is there; else the reason to skip, for `describe(..., { skip })`. */
export const skipWithoutChromium: false | string = existsSync(CHROMIUM_PATH) ? false : `no browser at ${CHROMIUM_PATH}`;

export async function launchChromium(): Promise<Browser> {
  const { chromium } = await import('playwright-core');
  return chromium.launch({ executablePath: CHROMIUM_PATH, args: CHROMIUM_ARGS });
}

/**
 * A page in its own browser context (own storage, own connections), with
 * every console error and uncaught exception recorded. Errors matching a
 * pattern passed to `expectErrors` (while it is active) are recorded apart,
 * for windows where the test itself cuts the network (a server restart).
 */
export class WatchedPage {
  readonly errors: string[] = [];
  readonly expectedErrors: string[] = [];
  private readonly expected = new Set<RegExp>();

  private constructor(
    readonly label: string,
    readonly context: BrowserContext,
    readonly page: Page,
  ) {
    page.on('console', (message) => {
      if (message.type() === 'error') this.record(`console.error: ${message.text()}`);
    });
    page.on('pageerror', (error) => this.record(`uncaught: ${error.message}`));
  }

  static async open(browser: Browser, label: string, options: { width?: number; height?: number } = {}): Promise<WatchedPage> {
    const context = await browser.newContext({ viewport: { width: options.width ?? 1280, height: options.height ?? 900 } });
    return new WatchedPage(label, context, await context.newPage());
  }

  /** Tolerates errors matching `pattern` until the returned function is called. */
  expectErrors(pattern: RegExp): () => void {
    this.expected.add(pattern);
    return () => this.expected.delete(pattern);
  }

  async close(): Promise<void> {
    await this.context.close();
  }

  private record(text: string): void {
    for (const pattern of this.expected) {
      if (pattern.test(text)) return void this.expectedErrors.push(text);
    }
    this.errors.push(text);
  }
}

/** Fails with every unexpected console error of every page, named by page. */
export function assertNoConsoleErrors(pages: readonly WatchedPage[]): void {
  const found = pages.flatMap((p) => p.errors.map((e) => `[${p.label}] ${e}`));
  if (found.length > 0) throw new Error(`console errors:\n${found.join('\n')}`);
}

/**
 * Runs a browser test body; when it fails, saves a full-page screenshot of
 * every page to test-results/ before rethrowing, and names the files in the error.
 */
export async function withScreenshotsOnFailure(testName: string, pages: readonly WatchedPage[], body: () => Promise<void>): Promise<void> {
  try {
    await body();
  } catch (err) {
    mkdirSync(RESULTS_DIR, { recursive: true });
    const stem = testName.replace(/[^A-Za-z0-9]+/g, '-').replace(/^-|-$/g, '').slice(0, 80);
    const saved: string[] = [];
    for (const watched of pages) {
      const path = join(RESULTS_DIR, `${stem}--${watched.label}.png`);
      try {
        await watched.page.screenshot({ path, fullPage: true });
        saved.push(path);
      } catch {
        // The page may be gone already; the original error matters more.
      }
    }
    if (err instanceof Error && saved.length > 0) err.message += `\nscreenshots: ${saved.join(', ')}`;
    throw err;
  }
}
