// Shared by the browser scripts: headless Debian chromium that can reach 127.0.0.1 only, a page,
// and the page errors and failed requests seen on it (aborted prefetches excepted).
const { chromium } = require('playwright-core');

exports.launch = async (viewport = { width: 1280, height: 900 }) => {
  const browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1'],
  });
  const page = await browser.newPage({ viewport });
  const problems = [];
  page.on('pageerror', (e) => problems.push(`page error at ${page.url()}: ${e.message}`));
  page.on('requestfailed', (r) => {
    const reason = r.failure()?.errorText;
    if (reason !== 'net::ERR_ABORTED') problems.push(`${r.url()}: ${reason}`);
  });
  page.on('response', (r) => {
    if (r.status() >= 500) problems.push(`${r.url()}: ${r.status()}`);
  });
  page.on('dialog', (d) => d.accept());
  return { browser, page, problems };
};

exports.signIn = async (page, base, key) => {
  await page.goto(`${base}/login/`);
  await page.fill('input[name="api-key"]', key);
  await page.click('text=Sign in with key');
  await page.waitForURL(`${base}/`);
};
