// Run by tests/dashboard.rs: node audit.cjs BASE_URL KEY JOB_ID. Signs in with KEY, opens the
// Audit page from the navigation, waits for the job's three transitions (filtered by its
// subject through the form), then filters by type. Prints what it saw as JSON.
const { launch, signIn } = require('./launch.cjs');

(async () => {
  const [base, key, job] = process.argv.slice(2);
  const { browser, page, problems } = await launch();
  await signIn(page, base, key);
  await page.click('nav >> text=Audit');
  await page.waitForURL(`${base}/audit/`);
  await page.fill('input[placeholder="jobs/…"]', `jobs/${job}`);
  await page.click('button:has-text("Filter")');
  await page.waitForURL((u) => u.searchParams.get('subject') === `jobs/${job}`);
  // The consumer stores what the outbox recorded within moments; the page polls.
  await page.waitForFunction(() => document.querySelectorAll('tbody tr').length >= 3, null, {
    timeout: 30000,
  });
  const rows = await page.locator('tbody tr').allInnerTexts();
  const jobLink = await page.locator('tbody tr a').first().getAttribute('href');
  await page.fill('input[placeholder="pysaas.job.dead"]', 'pysaas.job.succeeded');
  await page.click('button:has-text("Filter")');
  await page.waitForURL((u) => u.searchParams.get('type') === 'pysaas.job.succeeded');
  await page.waitForFunction(() => document.querySelectorAll('tbody tr').length === 1);
  const filtered = await page.locator('tbody tr').allInnerTexts();
  console.log(JSON.stringify({ rows, jobLink, filtered, problems }));
  await browser.close();
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
