// Run by tests/dashboard.rs: node analytics.cjs BASE_URL KEY JOBS. Signs in with KEY on the
// Overview, waits for the Analytics panel's finished-jobs chart to count JOBS (the embedded
// analytics consumer fills the rollups from the outbox; the panel polls), and for the operator's
// revenue chart. Prints what it saw as JSON.
const { launch, signIn } = require('./launch.cjs');

(async () => {
  const [base, key, jobs] = process.argv.slice(2);
  const { browser, page, problems } = await launch();
  await signIn(page, base, key);
  const finished = page.locator('[data-testid="chart-analytics-finished"]');
  await page.waitForFunction(
    (n) => {
      const el = document.querySelector('[data-testid="chart-analytics-finished"]');
      return el && Number(el.getAttribute('data-total')) >= n;
    },
    Number(jobs),
    { timeout: 30000 },
  );
  const revenue = page.locator('[data-testid="chart-analytics-revenue"]');
  await revenue.waitFor({ timeout: 30000 });
  console.log(
    JSON.stringify({
      finished: Number(await finished.getAttribute('data-total')),
      revenue: Number(await revenue.getAttribute('data-total')),
      title: await finished.locator('figcaption').innerText(),
      legend: await finished.locator('.u-legend').innerText(),
      problems,
    }),
  );
  await browser.close();
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
