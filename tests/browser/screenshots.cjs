// The README's screenshots: node tests/browser/screenshots.cjs BASE_URL API_KEY OUT_DIR, against
// a running dashboard with some jobs in it (see docs/dashboard.md).
const { launch, signIn } = require('./launch.cjs');

(async () => {
  const [base, key, out] = process.argv.slice(2);
  const shoot = async (page, path, file, wait) => {
    await page.goto(`${base}${path}`);
    await page.waitForSelector(wait);
    await page.waitForTimeout(300);
    await page.screenshot({ path: `${out}/${file}`, fullPage: true });
  };
  const { browser, page } = await launch();
  await signIn(page, base, key);
  await shoot(page, '/', 'overview.png', 'section[aria-label="Queues"] table');
  await shoot(page, '/jobs/', 'jobs.png', 'table');
  const first = await page.locator('table a').first().getAttribute('href');
  await shoot(page, '/jobs/?state=dead', 'dead.png', 'table');
  const dead = await page.locator('table a').first().getAttribute('href');
  await shoot(page, dead ?? first, 'job.png', '.badge');
  await page.emulateMedia({ colorScheme: 'dark' });
  await shoot(page, '/jobs/', 'jobs-dark.png', 'table');
  await page.setViewportSize({ width: 390, height: 844 });
  await shoot(page, '/', 'overview-390.png', 'section[aria-label="Queues"]');
  await browser.close();
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
