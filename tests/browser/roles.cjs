// Run by tests/dashboard.rs: node roles.cjs BASE_URL ADMIN_KEY. A read-only key sees jobs but is
// offered no write control, and the server refuses a write it forces (403); the admin manages
// API keys on the account page (created shown once, then revoked). Prints what it saw as JSON.
const { launch, signIn } = require('./launch.cjs');


(async () => {
  const [base, admin] = process.argv.slice(2);
  const { browser, page, problems } = await launch({ width: 390, height: 844 });
  const as = (key) => ({ Authorization: `Bearer ${key}` });

  const made = await page.request.post(`${base}/v1/api-keys`, {
    headers: as(admin),
    data: { name: 'reader', scopes: ['jobs:read'] },
  });
  const reader = (await made.json()).key;
  const job = await (
    await page.request.post(`${base}/v1/jobs`, { headers: as(admin), data: { kind: 'system.noop' } })
  ).json();

  await signIn(page, base, reader);
  await page.goto(`${base}/jobs/?id=${job.id}`);
  await page.waitForSelector('.badge');
  const readerControls = await page.locator('button:has-text("Retry"), button:has-text("Cancel"), a:has-text("Clone")').count();
  const readerSubmitLink = await page.locator('nav a:has-text("Submit")').count();
  const forced = await page.request.post(`${base}/v1/jobs/${job.id}/retry`, { headers: as(reader) });
  const scopes = await (async () => {
    await page.goto(`${base}/account/`);
    return page.locator('[data-testid="scopes"]').innerText();
  })();

  await page.click('text=Sign out');
  await signIn(page, base, admin);
  await page.goto(`${base}/account/`);
  await page.fill('section[aria-label="API keys"] input:not([type])', 'made-in-browser');
  await page.click('text=Create key');
  const shownOnce = await page.locator('[data-testid="new-key"]').innerText();
  const created = await page.request.get(`${base}/v1/me`, { headers: as(shownOnce) });
  // The row whose name cell is exactly the new key's (another key's prefix may hold any letters).
  const row = page.getByRole('row').filter({ has: page.getByRole('cell', { name: 'made-in-browser', exact: true }) });
  await row.getByRole('button', { name: 'Revoke' }).click();
  await row.getByText('revoked').waitFor();
  const afterRevoke = await page.request.get(`${base}/v1/me`, { headers: as(shownOnce) });

  console.log(
    JSON.stringify({
      readerControls,
      readerSubmitLink,
      forcedStatus: forced.status(),
      scopes,
      createdWorks: created.status(),
      revokedStatus: afterRevoke.status(),
      problems,
    }),
  );
  await browser.close();
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
