// Run by tests/contract.rs: node docs.cjs URL. Opens the Swagger page in headless Chromium and
// prints, as JSON, how long the operations took to show, how many there are, whether a loading
// indicator is still up, and every failed request or page error.
const { chromium } = require('playwright-core');

(async () => {
  const url = process.argv[2];
  const browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1'],
  });
  const page = await browser.newPage();
  const failed = [];
  page.on('requestfailed', (r) => failed.push(`${r.url()}: ${r.failure()?.errorText}`));
  page.on('pageerror', (e) => failed.push(`page error: ${e.message}`));
  page.on('response', (r) => { if (r.status() >= 400) failed.push(`${r.url()}: ${r.status()}`); });
  const start = Date.now();
  await page.goto(url);
  await page.waitForSelector('.opblock-summary', { timeout: 15000 });
  const ms = Date.now() - start;
  const operations = await page.locator('.opblock-summary').count();
  const loading = await page.locator('.loading-container').count();
  const title = await page.locator('.info .title').first().innerText();
  console.log(JSON.stringify({ ms, operations, loading, title, failed }));
  await browser.close();
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
