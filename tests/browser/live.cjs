// Run by tests/dashboard.rs: node live.cjs BASE_URL API_KEY OTHER_API_URL. The dashboard is
// served by one API process (BASE_URL); a job is submitted through another (OTHER_API_URL) and
// run by a worker process of its own. The job's page, with live updates on (nothing polls
// then), must show it `succeeded` within a second of its finish. Prints what it saw as JSON.
const { launch, signIn } = require('./launch.cjs');

(async () => {
  const [base, key, other] = process.argv.slice(2);
  const { browser, page, problems } = await launch();
  const headers = { Authorization: `Bearer ${key}` };

  await signIn(page, base, key);
  const submitted = await (
    await page.request.post(`${other}/v1/jobs`, { headers, data: { kind: 'system.sleep', payload: { ms: 1500 } } })
  ).json();
  await page.goto(`${base}/jobs/?id=${submitted.id}`);
  await page.waitForSelector('[data-testid="live"][data-live="true"]', { timeout: 10000 });
  // Requests for this job from here on: with live updates, one per change, none on a timer.
  let jobRequests = 0;
  page.on('request', (r) => {
    if (r.url().endsWith(`/v1/jobs/${submitted.id}`)) jobRequests += 1;
  });
  await page.waitForSelector('.badge.state-succeeded', { timeout: 20000 });
  const shownAt = Date.now();
  const job = await (await page.request.get(`${other}/v1/jobs/${submitted.id}`, { headers })).json();
  const lagMs = shownAt - Date.parse(job.finished_at);

  // Hidden, the tab closes its stream (and shows it is not live); shown again, it reopens.
  await page.evaluate(() => {
    Object.defineProperty(document, 'hidden', { configurable: true, get: () => true });
    document.dispatchEvent(new Event('visibilitychange'));
  });
  await page.waitForTimeout(300);
  await page.evaluate(() => {
    Object.defineProperty(document, 'hidden', { configurable: true, get: () => false });
    document.dispatchEvent(new Event('visibilitychange'));
  });
  await page.waitForSelector('[data-testid="live"][data-live="true"]', { timeout: 10000 });

  console.log(JSON.stringify({ id: submitted.id, state: job.state, lagMs, jobRequests, problems }));
  await browser.close();
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
