// Run by tests/dashboard.rs: node domains.cjs BASE_URL API_KEY. The domain kinds and queues
// appear in the dashboard like any other, from the API's lists: reads the submit form's kinds and
// the overview's queues after the test submitted one job per domain queue. Prints what it saw.
const { launch, signIn } = require('./launch.cjs');

(async () => {
  const [base, key] = process.argv.slice(2);
  const { browser, page, problems } = await launch();
  const headers = { authorization: `Bearer ${key}` };

  await signIn(page, base, key);
  await page.goto(`${base}/submit/`);
  await page.waitForSelector('select[name="kind"] option[value="notification.in_app"]', { state: 'attached' });
  const formKinds = await page.$$eval('select[name="kind"] option', (os) => os.map((o) => o.value).filter(Boolean));
  const apiKinds = (await (await page.request.get(`${base}/v1/kinds`, { headers })).json()).kinds
    .filter((k) => k.submittable)
    .map((k) => k.kind);

  // A domain kind's form is generated from its schema like any other.
  await page.selectOption('select[name="kind"]', 'notification.in_app');
  await page.waitForSelector('#root_title');
  const inAppFields = await page.$$eval('[id^="root_"]', (es) => es.map((e) => e.id));

  await page.goto(`${base}/`);
  const queues = ['billing', 'notifications', 'profiles'];
  for (const q of queues) {
    await page.waitForSelector(`section[aria-label="Queues"] tr:has-text("${q}")`, { timeout: 20000 });
  }
  const queueRows = await page.locator('section[aria-label="Queues"] tbody tr').allInnerTexts();

  await page.goto(`${base}/jobs/?kind=notification.in_app`);
  await page.waitForSelector('tbody tr', { timeout: 10000 });
  const inAppJobs = await page.locator('tbody tr').count();

  console.log(JSON.stringify({ formKinds, apiKinds, inAppFields, queueRows, inAppJobs, problems }));
  await browser.close();
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
