// Drives headless Chromium (Debian's) with playwright-core for the Python
// browser suite: one JSON command per stdin line, one JSON answer per stdout
// line ({id, ok, result} or {id, ok: false, error}). Every wait is bounded.
import { createInterface } from "node:readline";
import { existsSync, writeFileSync } from "node:fs";
import { chromium } from "playwright-core";

const executablePath = ["/usr/lib/chromium/chromium", "/usr/bin/chromium"].find(existsSync);
const browser = await chromium.launch({
  executablePath,
  chromiumSandbox: false,
  timeout: 30000,
  // Chromium's own background traffic would only hit this machine's closed network.
  args: ["--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-extensions",
         // More from the suite (test_tls.py: the SPKI pins of its test certificates).
         ...JSON.parse(process.env.RWS_BROWSER_ARGS || "[]")],
});

let context = null;
let page = null;
let problems = [];  // console errors and uncaught exceptions of the page
let consoleLines = [];  // everything the page logged, for debugging a failure
let cdp = null;  // a CDP session while profiling

async function open({ width = 1280, height = 800, mobile = false, dark = false, init_script = null }) {
  if (context) await context.close();
  context = await browser.newContext({
    viewport: { width, height },
    deviceScaleFactor: mobile ? 2 : 1,
    isMobile: mobile,
    hasTouch: mobile,
    colorScheme: dark ? "dark" : "light",
  });
  context.setDefaultTimeout(10000);
  // Records every connection state the page shows (#status data-state), so
  // that tests can check states too brief to poll for, such as replaying.
  await context.addInitScript(() => {
    window.__states = [];
    window.__stateTimes = [];  // ms since navigation start, for the benchmark
    new MutationObserver((records) => {
      for (const r of records) {
        if (r.target.id !== "status") continue;
        const state = r.target.dataset.state;
        if (window.__states[window.__states.length - 1] === state) continue;
        window.__states.push(state);
        window.__stateTimes.push(performance.now());
      }
    }).observe(document, { subtree: true, attributes: true, attributeFilter: ["data-state"] });
  });
  // More instrumentation from the caller (bench/bench_page.py), as source text.
  if (init_script) await context.addInitScript({ content: init_script });
  page = await context.newPage();
  problems = [];
  consoleLines = [];
  page.on("console", (m) => {
    consoleLines.push(`${m.type()}: ${m.text()}`);
    // The browser's own reports of failed requests (a refused WebSocket while
    // the server restarts, the 404 of a disabled sign-in) are expected.
    if (m.type() === "error" && !/^(Failed to load resource|WebSocket connection to)/.test(m.text()))
      problems.push(`console: ${m.text()}`);
  });
  page.on("pageerror", (e) => problems.push(`exception: ${e.message}`));
  return true;
}

const ops = {
  open,
  goto: async ({ url }) => { await page.goto(url, { waitUntil: "load" }); return page.url(); },
  reload: async () => { await page.reload({ waitUntil: "load" }); return true; },
  eval: async ({ expression }) => page.evaluate(expression),
  // Polls with evaluate: waitForFunction compiles its predicate inside the
  // page, which the page's Content-Security-Policy (rightly) forbids.
  wait: async ({ expression, timeout_ms = 10000 }) => {
    const deadline = Date.now() + timeout_ms;
    for (;;) {
      const value = await page.evaluate(expression);
      if (value) return value;
      if (Date.now() > deadline) throw new Error(`timed out after ${timeout_ms} ms waiting for ${expression}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  },
  // Network emulation: existing connections go silent (frames are held, not
  // closed) and new ones fail, as when a laptop loses its network.
  offline: async ({ offline }) => { await context.setOffline(!!offline); return true; },
  resize: async ({ width, height }) => { await page.setViewportSize({ width, height }); return true; },
  fill: async ({ selector, text }) => { await page.fill(selector, text); return true; },
  press: async ({ selector, key }) => { await page.press(selector, key); return true; },
  click: async ({ selector }) => { await page.click(selector); return true; },
  // e.g. ["clipboard-read"], to read back what the page copied
  grant: async ({ permissions }) => { await context.grantPermissions(permissions); return true; },
  screenshot: async ({ path, full_page = false }) => { await page.screenshot({ path, fullPage: full_page }); return path; },
  // V8 CPU profile of the page (bench/bench_page.py --profile), across reloads.
  profile_start: async () => {
    cdp = await context.newCDPSession(page);
    await cdp.send("Profiler.enable");
    await cdp.send("Profiler.setSamplingInterval", { interval: 200 });
    await cdp.send("Profiler.start");
    return true;
  },
  profile_stop: async ({ path }) => {
    const { profile } = await cdp.send("Profiler.stop");
    await cdp.detach();
    cdp = null;
    writeFileSync(path, JSON.stringify(profile));
    return path;
  },
  problems: async () => problems,
  console: async () => consoleLines,
  quit: async () => { await browser.close(); process.exit(0); },
};

const lines = createInterface({ input: process.stdin });
for await (const line of lines) {
  let command;
  try {
    command = JSON.parse(line);
    const result = await ops[command.op](command);
    process.stdout.write(JSON.stringify({ id: command.id, ok: true, result: result ?? null }) + "\n");
  } catch (e) {
    process.stdout.write(JSON.stringify({ id: command?.id, ok: false, error: String(e?.message || e) }) + "\n");
  }
}
await browser.close();
