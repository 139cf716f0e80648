// Run by tests/dashboard.rs: node tenants.cjs BASE_URL EMAIL PASSWORD OTHER_TENANT. Logs in with
// email and password, switches to OTHER_TENANT on the account page, and reports the tenant the
// account page then shows. Prints what it saw as JSON.
const { launch } = require('./launch.cjs');

(async () => {
  const [base, email, password, other] = process.argv.slice(2);
  const { browser, page, problems } = await launch();
  await page.goto(`${base}/login/`);
  await page.fill('input[type="email"]', email);
  await page.fill('input[type="password"]', password);
  await page.click('button:has-text("Log in")');
  await page.waitForURL(`${base}/`);
  await page.goto(`${base}/account/`);
  await page.waitForSelector('select[name="tenant"]');
  const before = await page.locator('select[name="tenant"]').inputValue();
  const choices = await page.locator('select[name="tenant"] option').count();
  await page.selectOption('select[name="tenant"]', other);
  await page.waitForURL(`${base}/`);
  await page.goto(`${base}/account/`);
  await page.waitForSelector('select[name="tenant"]');
  const after = await page.locator('select[name="tenant"]').inputValue();
  console.log(JSON.stringify({ before, after, choices, problems }));
  await browser.close();
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
