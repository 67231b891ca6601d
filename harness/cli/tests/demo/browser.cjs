// Drives `tracebench demo`'s page in headless Chromium through playwright-core (no browser
// download: Debian's chromium). `node browser.cjs URL CHROMIUM`; exit 0 when the page loads,
// a judged trace appears with its waterfall, and turning "strip Kafka headers" on makes
// broken edges appear. tests/demo.rs runs it; NODE_PATH finds playwright-core.
"use strict";
const { chromium } = require("playwright-core");

const [url, executablePath] = process.argv.slice(2);

async function main() {
  const browser = await chromium.launch({
    executablePath,
    args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
  });
  const errors = [];
  try {
    const page = await browser.newPage();
    page.on("pageerror", (e) => errors.push(String(e)));
    await page.goto(url);
    if ((await page.title()) !== "tracebench demo") throw new Error(`title: ${await page.title()}`);
    // A trace is judged and listed, and its waterfall drawn with the critical path.
    await page.waitForSelector('#traces tr[data-verdict="complete"]', { timeout: 60000 });
    await page.waitForSelector("#waterfall .row.critical", { timeout: 10000 });
    await page.waitForSelector('#waterfall .row[data-edge="continued"]', { timeout: 10000 });
    console.log("a complete trace and its waterfall are shown");
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
    if (errors.length) throw new Error(`page errors: ${errors.join("; ")}`);
  } finally {
    await browser.close();
  }
}

main().then(
  () => process.exit(0),
  (e) => { console.error(String(e && e.stack || e)); process.exit(1); },
);
