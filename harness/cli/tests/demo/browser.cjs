// Drives `tracebench demo`'s page in headless Chromium through playwright-core (no browser
// download: Debian's chromium). `node browser.cjs URL CHROMIUM SHOTS`; exit 0 when the page
// loads, a judged trace appears with its waterfall, turning "strip Kafka headers" on makes
// broken edges appear, and slowing the LLM five times makes its call the larger part of the
// critical path. Each step leaves a screenshot in the directory SHOTS (the course's chapter 00
// shows them: 00-healthy.png, 00-strip-kafka.png, 00-slow-llm.png). tests/demo.rs runs it;
// NODE_PATH finds playwright-core.
"use strict";
const { chromium } = require("playwright-core");

const path = require("path");

const [url, executablePath, shots] = process.argv.slice(2);

// The LLM call's share of the critical path of the waterfall shown.
async function llmShare(page) {
  return page.evaluate(() => {
    const rows = [...document.querySelectorAll("#waterfall .row.critical")];
    const ms = (row) => parseFloat(row.querySelector(".bar").title);
    const total = rows.reduce((sum, row) => sum + ms(row), 0);
    const llm = rows.filter((row) => row.querySelector(".name b").textContent === "llm-api");
    return llm.reduce((sum, row) => sum + ms(row), 0) / Math.max(total, 1e-9);
  });
}

// Clicks the newest trace with `verdict` judged after `since` (Unix ms), once there is one.
async function showNewest(page, verdict, since) {
  const handle = await page.waitForFunction(
    ([verdict, since]) => {
      const row = document.querySelector(`#traces tr[data-verdict="${verdict}"]`);
      return row && Number(row.dataset.completedAt) > since ? row.dataset.trace : null;
    },
    [verdict, since],
    { timeout: 60000 },
  );
  const trace = await handle.jsonValue();
  await page.click(`#traces tr[data-trace="${trace}"]`);
  await page.waitForFunction(
    (trace) => document.querySelector("#waterfall-title").textContent.includes(trace.slice(0, 12)),
    trace,
    { timeout: 10000 },
  );
}

async function main() {
  const browser = await chromium.launch({
    executablePath,
    args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
  });
  const errors = [];
  try {
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    page.on("pageerror", (e) => errors.push(String(e)));
    await page.goto(url);
    if ((await page.title()) !== "tracebench demo") throw new Error(`title: ${await page.title()}`);
    // A trace is judged and listed, and its waterfall drawn with the critical path.
    await page.waitForSelector('#traces tr[data-verdict="complete"]', { timeout: 60000 });
    await page.waitForSelector("#waterfall .row.critical", { timeout: 10000 });
    await page.waitForSelector('#waterfall .row[data-edge="continued"]', { timeout: 10000 });
    console.log("a complete trace and its waterfall are shown");
    await page.screenshot({ path: path.join(shots, "00-healthy.png"), fullPage: false });
    // Strip the Kafka headers: new traces come back broken, with the broken edges marked.
    await page.click("#strip-kafka");
    await page.waitForFunction(() => document.querySelector("#strip-kafka").checked);
    // The list is redrawn every second: click by selector, which finds the row afresh.
    await page.waitForSelector('#traces tr[data-verdict="broken"]', { timeout: 60000 });
    await page.click('#traces tr[data-verdict="broken"]');
    await page.waitForSelector('#waterfall .row[data-edge="broken"] .edge-broken', { timeout: 10000 });
    const problems = await page.textContent("#problems");
    if (!problems.includes("broken_edge")) throw new Error(`problems: ${problems}`);
    console.log(`after the switch: ${problems.split("\n")[0]}`);
    await page.screenshot({ path: path.join(shots, "00-strip-kafka.png"), fullPage: false });
    // Kafka whole again; then the LLM five times slower: its call takes more of the path.
    await page.click("#strip-kafka");
    await page.waitForFunction(() => !document.querySelector("#strip-kafka").checked);
    let since = Date.now();
    await showNewest(page, "complete", since);
    const before = await llmShare(page);
    await page.fill("#llm-latency", "5");
    await page.dispatchEvent("#llm-latency", "change");
    since = Date.now();
    await showNewest(page, "complete", since);
    const after = await llmShare(page);
    console.log(`the LLM's share of the critical path: ${before.toFixed(2)} before, ${after.toFixed(2)} after`);
    if (!(after > before)) throw new Error(`the LLM's share did not grow: ${before} → ${after}`);
    await page.screenshot({ path: path.join(shots, "00-slow-llm.png"), fullPage: false });
    if (errors.length) throw new Error(`page errors: ${errors.join("; ")}`);
  } finally {
    await browser.close();
  }
}

main().then(
  () => process.exit(0),
  (e) => { console.error(String(e && e.stack || e)); process.exit(1); },
);
