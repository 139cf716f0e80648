// Run by tests/dashboard.rs: node dashboard.cjs BASE_URL API_KEY. Signs in with the key, submits
// a `system.sleep` job through the form generated from its schema, and follows the job page
// until it shows `succeeded` — without reloading. Prints what it saw as JSON.
const { launch, signIn } = require('./launch.cjs');

(async () => {
  const [base, key] = process.argv.slice(2);
  const { browser, page, problems } = await launch();

  await signIn(page, base, key);
  await page.waitForSelector('section[aria-label="Queues"]');

  await page.goto(`${base}/submit/`);
  await page.selectOption('select[name="kind"]', 'system.sleep');
  await page.fill('#root_ms', '300');
  await page.click('button[type="submit"]:has-text("Submit")');
  await page.waitForURL(/\/jobs\/\?id=/);
  const jobUrl = page.url();
  // A reload would lose this mark: the page must update in place.
  await page.evaluate(() => { window.__stillHere = true; });
  await page.waitForSelector('.badge.state-succeeded', { timeout: 20000 });
  const reloaded = !(await page.evaluate(() => window.__stillHere === true));
  const result = await page.locator('[data-testid="result"]').innerText();
  const attemptRows = await page.locator('section[aria-label="Attempts"] tbody tr').allInnerTexts();
  const id = new URL(jobUrl).searchParams.get('id');

  // A payload search finds the job by its content.
  await page.goto(`${base}/jobs/`);
  await page.fill('input[name="payload"]', '{"ms": 300}');
  await page.click('button:has-text("Apply")');
  await page.waitForURL(/payload=/);
  await page.waitForSelector(`a[href="/jobs/?id=${new URL(jobUrl).searchParams.get('id')}"]`, { timeout: 10000 });
  const foundByPayload = await page.locator('tbody tr').count();

  // The dead-jobs page and the filters come from the URL.
  await page.goto(`${base}/jobs/?state=succeeded&kind=system.sleep`);
  await page.waitForSelector(`a[href="/jobs/?id=${id}"]`, { timeout: 10000 });

  // A job that fails until dead is found on the dead page and retried by filter, in bulk.
  const headers = { Authorization: `Bearer ${key}` };
  const dead = await page.request.post(`${base}/v1/jobs`, {
    headers,
    data: { kind: 'system.fail', payload: { times: 99 }, max_attempts: 1 },
  });
  const deadId = (await dead.json()).id;
  for (let i = 0; i < 100; i += 1) {
    const job = await (await page.request.get(`${base}/v1/jobs/${deadId}`, { headers })).json();
    if (job.state === 'dead') break;
    await page.waitForTimeout(100);
  }
  // Its page shows the failed attempt with the handler's error detail.
  await page.goto(`${base}/jobs/?id=${deadId}`);
  const deadAttempts = await page.locator('section[aria-label="Attempts"] tbody').innerText({ timeout: 10000 });
  // Found by state and payload, then retried with everything matching that filter.
  await page.goto(`${base}/jobs/?state=dead&payload=${encodeURIComponent('{"times":99}')}`);
  await page.waitForSelector(`a[href="/jobs/?id=${deadId}"]`, { timeout: 10000 });
  await page.click('text=Retry all matching');
  const bulk = await page.locator('[role="status"]').innerText({ timeout: 10000 });
  const retried = await (await page.request.get(`${base}/v1/jobs/${deadId}`, { headers })).json();

  // A selected row alone: the dead job, dead again after its retry, is deleted on its own.
  for (let i = 0; i < 100; i += 1) {
    const job = await (await page.request.get(`${base}/v1/jobs/${deadId}`, { headers })).json();
    if (job.state === 'dead') break;
    await page.waitForTimeout(100);
  }
  await page.goto(`${base}/jobs/?state=dead`);
  await page.check(`input[aria-label="Select job ${deadId}"]`);
  await page.click('button:has-text("Delete selected")');
  await page.waitForSelector('[role="status"]:has-text("deleted")', { timeout: 10000 });
  const deletedSelected = await page.locator('[role="status"]').innerText();
  const deletedStatus = (await page.request.get(`${base}/v1/jobs/${deadId}`, { headers })).status();

  // A schedule's cron is edited with a preview of its next fire times, then saved.
  await page.request.post(`${base}/v1/schedules`, {
    headers,
    data: { name: 'nightly', cron: '0 0 1 * * *', kind: 'system.noop' },
  });
  await page.goto(`${base}/schedules/`);
  await page.click('tr:has-text("nightly") >> text=Edit cron');
  await page.fill('form[aria-label="Edit nightly"] input[name="cron"]', '0 30 2 * * *');
  await page.fill('form[aria-label="Edit nightly"] input[name="timezone"]', 'Europe/Berlin');
  // The preview made for what was typed (both fields settled) shows 02:30 Berlin time.
  const settled = '[data-testid="preview"][data-zone="Europe/Berlin"][data-cron="0 30 2 * * *"]';
  await page.waitForFunction((selector) => {
    const items = document.querySelectorAll(`${selector} li`);
    return items.length === 5 && [...items].every((li) => li.textContent.includes('2:30'));
  }, settled);
  const previewed = await page.locator(`${settled} li`).count();
  await page.click('form[aria-label="Edit nightly"] button:has-text("Save")');
  await page.waitForSelector('tr:has-text("nightly") code:has-text("0 30 2 * * *")');
  const saved = await (await page.request.get(`${base}/v1/schedules/nightly`, { headers })).json();

  // The schedule is paused, then triggered by hand (a trigger fires even a paused schedule).
  await page.click('tr:has-text("nightly") >> button:has-text("Pause")');
  await page.waitForSelector('tr:has-text("nightly") .badge:has-text("paused")');
  await page.click('tr:has-text("nightly") >> button:has-text("Trigger now")');
  let triggered = [];
  for (let i = 0; i < 100 && triggered.length === 0; i += 1) {
    const list = await (await page.request.get(`${base}/v1/jobs?kind=system.noop`, { headers })).json();
    triggered = list.jobs;
    if (triggered.length === 0) await page.waitForTimeout(100);
  }
  const pausedSchedule = (await (await page.request.get(`${base}/v1/schedules/nightly`, { headers })).json()).paused;

  // The queue is paused from the overview: a job submitted now is not claimed until it is resumed.
  await page.goto(`${base}/`);
  await page.click('button[aria-label="Pause default"]');
  await page.waitForSelector('tr:has-text("default") .badge:has-text("paused")');
  await page.waitForTimeout(1000); // workers see a pause within a second
  const held = await (
    await page.request.post(`${base}/v1/jobs`, { headers, data: { kind: 'system.noop', queue: 'default' } })
  ).json();
  await page.waitForTimeout(1500);
  const whilePaused = (await (await page.request.get(`${base}/v1/jobs/${held.id}`, { headers })).json()).state;
  await page.click('button[aria-label="Resume default"]');
  await page.waitForSelector('button[aria-label="Pause default"]');
  let afterResume = whilePaused;
  for (let i = 0; i < 100 && afterResume !== 'succeeded'; i += 1) {
    await page.waitForTimeout(100);
    afterResume = (await (await page.request.get(`${base}/v1/jobs/${held.id}`, { headers })).json()).state;
  }

  // The workers page lists this deployment's worker as live.
  await page.goto(`${base}/workers/`);
  await page.waitForSelector('.badge:has-text("live")', { timeout: 10000 });
  const liveWorkers = await page.locator('.badge:has-text("live")').count();

  // The overview charts what the workers finished (their counts arrive every few seconds).
  await page.goto(`${base}/`);
  // At least the sleep job, the dead job's two attempts, the triggered and the held job.
  await page.waitForFunction(
    () => Number(document.querySelector('[data-testid="chart-processed"]')?.getAttribute('data-total')) >= 5,
    null,
    { timeout: 30000 },
  );
  const charted = Number(await page.locator('[data-testid="chart-processed"]').getAttribute('data-total'));
  const canvases = await page.locator('figure.chart canvas').count();
  const liveCount = await page.locator('[data-testid="workers-live"]').innerText();

  console.log(
    JSON.stringify({ charted, canvases, liveCount, id, reloaded, result: JSON.parse(result), bulk, retriedAttempts: retried.attempts, liveWorkers, foundByPayload, previewed, savedCron: saved.cron, savedZone: saved.timezone, triggered: triggered.length, attemptRows, deadAttempts, deletedSelected, deletedStatus, pausedSchedule, whilePaused, afterResume, problems }),
  );
  await browser.close();
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
