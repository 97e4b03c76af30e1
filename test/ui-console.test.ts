import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import AxeBuilder from '@axe-core/playwright';
import { Browser, BrowserContext, Page, chromium } from 'playwright-core';
import { makeCsr, writeTemp } from './helpers/csr';
import { TestCa, runAsync, startTestCa } from './helpers/harness';

/**
 * The admin console in a real browser: Debian's Chromium driven by
 * playwright-core (nothing downloaded), against a real hsmca (SQLite and the
 * software HSM). Every page is checked by axe-core and photographed at desktop
 * (1280 px) and phone (375 px) widths into HSMCA_UI_SCREENSHOTS (default: a
 * folder in the system's temp directory; never committed).
 */

const CHROMIUM = process.env.HSMCA_TEST_CHROMIUM ?? '/usr/bin/chromium';
const SHOTS = process.env.HSMCA_UI_SCREENSHOTS ?? path.join(os.tmpdir(), 'hsmca-ui-screenshots');
const WAIT = 20_000;

jest.setTimeout(120_000);

let ca: TestCa;
let browser: Browser;
/** the admin's tab, signed in by the first test and used by the next ones */
let admin: { context: BrowserContext; page: Page };
/** what the pages wrote to the console as errors (a CSP violation lands here) */
const consoleErrors: string[] = [];

async function newPage(width = 1280): Promise<{ context: BrowserContext; page: Page }> {
  const context = await browser.newContext({ viewport: { width, height: width < 600 ? 800 : 900 }, deviceScaleFactor: 1 });
  const page = await context.newPage();
  page.setDefaultTimeout(WAIT);
  page.on('console', (m) => {
    if (m.type() === 'error') consoleErrors.push(`${page.url()}: ${m.text()}`);
  });
  page.on('pageerror', (e) => consoleErrors.push(`${page.url()}: ${e.message}`));
  return { context, page };
}

async function signIn(page: Page, token: string, at = ''): Promise<void> {
  await page.goto(`${ca.url}/ui/${at}`);
  await page.getByLabel('Bearer token').fill(token);
  // by keyboard: Enter submits the form
  await page.getByLabel('Bearer token').press('Enter');
}

/** axe-core on the page as it is: no serious or critical violation. */
async function expectAccessible(page: Page, name: string): Promise<void> {
  const r = await new AxeBuilder({ page }).analyze();
  const bad = r.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
  if (bad.length) throw new Error(`${name}: axe found ${bad.map((v) => `${v.id} (${v.impact}): ${v.help} at ${v.nodes.map((n) => n.target.join(' ')).slice(0, 3).join('; ')}`).join('\n')}`);
}

/** The page at 1280 and 375 px wide, full length. */
async function shoot(page: Page, name: string): Promise<void> {
  const size = page.viewportSize()!;
  await page.setViewportSize({ width: 1280, height: 900 });
  await page.screenshot({ path: path.join(SHOTS, `${name}-desktop.png`), fullPage: true });
  await page.setViewportSize({ width: 375, height: 800 });
  // nothing wider than the phone's screen
  const overflow = await page.evaluate('document.documentElement.scrollWidth - document.documentElement.clientWidth');
  expect({ page: name, overflow }).toEqual({ page: name, overflow: 0 });
  await page.screenshot({ path: path.join(SHOTS, `${name}-phone.png`), fullPage: true });
  await page.setViewportSize(size);
}

async function issue(token: string, cn: string, slot: number): Promise<string> {
  const { csr } = makeCsr({ subject: `/CN=${cn}`, sans: `DNS:${cn}`, slot });
  const r = await ca.api('POST', '/api/v1/certificates', { token, body: { csr, profile: 'tls-server', validityDays: 30 } });
  expect(r.status).toBe(201);
  return r.body.serialNumber;
}

async function requesterToken(name: string, scope?: unknown): Promise<{ id: string; token: string }> {
  const r = await ca.api('POST', '/api/v1/tokens', { body: { role: 'requester', name, scope } });
  expect(r.status).toBe(201);
  return { id: r.body.id, token: r.body.token };
}

beforeAll(async () => {
  fs.mkdirSync(SHOTS, { recursive: true });
  // the console as `npm run build` makes it
  await require('../scripts/build-ui.js').buildUi();
  ca = await startTestCa({ name: 'sqlite+soft', database: 'sqlite', hsm: 'soft' });
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
});

afterAll(async () => {
  await browser?.close();
  await ca?.stop();
});

describe('the admin console in Chromium', () => {
  it('refuses a wrong token with the API message, then signs in by keyboard; the token is in no cookie or URL', async () => {
    admin = await newPage();
    const { context, page } = admin;
    await signIn(page, 'not-a-token-' + 'x'.repeat(40), '#/certificates');
    await expect(page.getByRole('alert').textContent()).resolves.toContain('the bearer token is not valid');
    await expectAccessible(page, 'sign-in');
    await shoot(page, '01-sign-in-refused');

    await page.getByLabel('Bearer token').fill(ca.adminToken);
    await page.getByLabel('Bearer token').press('Enter');
    await page.getByRole('heading', { name: 'Certificates' }).waitFor();
    expect(await page.getByRole('navigation').getByRole('link').allTextContents()).toEqual(['Overview', 'Certificates', 'Tokens', 'Audit', 'ACME']);
    expect(await context.cookies()).toEqual([]);
    expect(page.url()).not.toContain(ca.adminToken);
    // the keyboard reaches the navigation: Tab from the top goes to the skip link, then the console's links
    await page.keyboard.press('Tab');
    expect(await page.evaluate('document.activeElement?.textContent')).toBe('Skip to content');
    await page.keyboard.press('Tab');
    expect(await page.evaluate('document.activeElement?.textContent')).toBe('Overview');
  });

  it('finds a certificate issued through the API by name, revokes it with confirmation, and OCSP says revoked', async () => {
    const cn = `ui-find-${Date.now().toString(36)}.example.test`;
    // a few neighbours, one of them revoked, so that the list has more than the one sought
    for (const [i, name] of ['api.payments.example.test', 'grafana.ops.example.test', 'ldap.corp.example.test'].entries()) {
      const s = await issue(ca.adminToken, name, 42 + i);
      if (i === 1) expect((await ca.api('POST', `/api/v1/certificates/${s}/revoke`, { body: { reason: 'superseded' } })).status).toBe(200);
    }
    const serial = await issue(ca.adminToken, cn, 41);
    const { page } = admin;
    await page.getByRole('link', { name: 'Certificates' }).click();
    await page.locator('tbody tr').nth(3).waitFor();
    await expectAccessible(page, 'certificates');
    await shoot(page, '03-certificates');
    await page.getByLabel('Serial or name').fill(cn.slice(0, 18));
    await page.getByRole('button', { name: 'Search' }).click();
    const link = page.getByRole('link', { name: serial });
    await link.waitFor();
    // the full list stays on screen until the search's answer replaces it
    await page.locator('tbody tr').nth(1).waitFor({ state: 'detached' });
    expect(await page.locator('tbody tr').count()).toBe(1);

    // a serial in upper case with colons finds it too
    await page.getByLabel('Serial or name').fill(serial.toUpperCase().match(/../g)!.join(':'));
    await page.getByRole('button', { name: 'Search' }).click();
    await page.getByRole('link', { name: serial }).waitFor();
    expect(await page.locator('tbody tr').count()).toBe(1);

    await page.getByRole('link', { name: serial }).click();
    await page.getByRole('heading', { name: 'Extensions' }).waitFor();
    expect(await page.locator('#ocsp-status').textContent()).toBe('good');
    const fields = await page.locator('main').textContent();
    expect(fields).toContain(`DNS:${cn}`);
    expect(fields).toContain('serverAuth');
    await expectAccessible(page, 'certificate detail');
    await shoot(page, '04-certificate-detail');

    await page.getByLabel('Reason').selectOption('keyCompromise');
    await page.getByRole('button', { name: 'Revoke…' }).click();
    await page.getByRole('alertdialog').waitFor();
    await expectAccessible(page, 'revoke confirmation');
    await shoot(page, '05-revoke-confirm');
    // still good until confirmed
    expect((await ca.api('GET', `/api/v1/certificates/${serial}`)).body.status).toBe('good');
    // the confirmation takes the focus: Enter confirms
    expect(await page.evaluate('document.activeElement?.textContent')).toBe('Yes, revoke it');
    await page.keyboard.press('Enter');
    await page.locator('#ocsp-status', { hasText: 'revoked' }).waitFor();
    expect(await page.locator('main').textContent()).toContain('keyCompromise');

    // the outside judge: openssl asks the CA's OCSP responder
    const rec = await ca.api('GET', `/api/v1/certificates/${serial}`);
    expect(rec.body.status).toBe('revoked');
    const chain = (await ca.api('GET', '/api/v1/ca', { token: null })).body;
    const certFile = writeTemp('cert.pem', rec.body.certificate);
    const issuerFile = writeTemp('issuer.pem', chain.issuer);
    const rootFile = writeTemp('root.pem', chain.root);
    const o = await runAsync('openssl', ['ocsp', '-issuer', issuerFile, '-cert', certFile, '-CAfile', rootFile, '-url', `${ca.url}/ocsp`]);
    expect(o.out).toContain('Response verify OK');
    expect(o.out).toMatch(/: revoked/);
    expect(o.out).toMatch(/Reason: keyCompromise/);
  });

  it('creates a token shown once with a copy button, lists it and revokes it', async () => {
    const { page } = admin;
    await page.getByRole('link', { name: 'Tokens' }).click();
    await page.getByLabel('Name').fill('ui-created');
    await page.getByLabel('Expires in (days, optional)').fill('30');
    await page.getByLabel('Scope (JSON, optional; requester tokens)').fill('{"names": ["*.svc.test"], "maxValidityDays": 10}');
    await page.getByRole('button', { name: 'Create token' }).click();
    const token = (await page.locator('#new-token').textContent())!.trim();
    expect(token).toMatch(/^[0-9a-f]{64}$/);
    await page.getByRole('button', { name: 'Copy token' }).waitFor();
    // the new token works against the API
    expect((await ca.api('GET', '/api/v1/whoami', { token })).body).toMatchObject({ name: 'ui-created', role: 'requester', scope: { names: ['*.svc.test'], maxValidityDays: 10 } });
    await expectAccessible(page, 'tokens');
    await shoot(page, '06-tokens-created');

    // a bad scope shows the API's message
    await page.getByLabel('Name').fill('ui-bad-scope');
    await page.getByLabel('Scope (JSON, optional; requester tokens)').fill('{"colour": "blue"}');
    await page.getByRole('button', { name: 'Create token' }).click();
    await expect(page.getByRole('alert').textContent()).resolves.toContain('unknown scope field "colour"');
    await page.getByLabel('Scope (JSON, optional; requester tokens)').fill('');

    await page.getByRole('button', { name: 'Revoke token ui-created' }).click();
    await page.getByRole('button', { name: 'Yes, revoke' }).click();
    await page.locator('tr', { hasText: 'ui-created' }).locator('.badge', { hasText: 'revoked' }).waitFor();
    expect((await ca.api('GET', '/api/v1/whoami', { token })).status).toBe(401);
  });

  it('lists and filters the audit trail and verifies it through the API', async () => {
    const { page } = admin;
    await page.getByRole('link', { name: 'Audit' }).click();
    await page.getByRole('heading', { name: 'Audit trail' }).waitFor();
    await page.getByLabel('Type').selectOption('tokenRevoked');
    await page.getByRole('button', { name: 'Filter' }).click();
    // the unfiltered list stays on screen until the filtered one replaces it: wait until no row of another type is left
    // (a filter that does not work times out here)
    await page.locator('tbody td[data-label="Type"]').filter({ hasNotText: 'tokenRevoked' }).first().waitFor({ state: 'detached' });
    const types = await page.locator('tbody td[data-label="Type"]').allTextContents();
    expect(types.length).toBeGreaterThan(0);
    expect(new Set(types)).toEqual(new Set(['tokenRevoked']));
    await page.getByLabel('Type').selectOption('');
    await page.getByLabel('Actor').fill('admin:admin');
    await page.getByRole('button', { name: 'Filter' }).click();
    await page.locator('tbody td[data-label="Type"]', { hasText: 'certificateRevoked' }).first().waitFor();
    expect(new Set(await page.locator('tbody td[data-label="Actor"]').allTextContents())).toEqual(new Set(['admin:admin']));

    await page.getByRole('button', { name: 'Verify the audit trail' }).click();
    await expect(page.locator('#verify-result').textContent()).resolves.toContain('The audit trail verifies');
    await expectAccessible(page, 'audit');
    await shoot(page, '07-audit');
  });

  it('creates, lists and withdraws ACME External Account Binding keys', async () => {
    const acmeToken = await requesterToken('ui-acme-client');
    const { page } = admin;
    await page.getByRole('link', { name: 'ACME' }).click();
    await page.getByLabel('Requester token').selectOption(acmeToken.id);
    await page.getByRole('button', { name: 'Create key' }).click();
    const kid = (await page.locator('#eab-kid').textContent())!.trim();
    expect((await page.locator('#eab-hmac').textContent())!.trim()).toMatch(/^[A-Za-z0-9_-]{43}$/);
    await page.locator('tbody td', { hasText: kid }).waitFor();
    await expectAccessible(page, 'acme');
    await shoot(page, '08-acme');
    await page.getByRole('button', { name: `Withdraw key ${kid}` }).click();
    await page.getByRole('button', { name: 'Yes, withdraw' }).click();
    await page.locator('tbody td', { hasText: kid }).waitFor({ state: 'detached' });
    expect((await ca.api('GET', '/api/v1/acme/eab-keys')).body.items.map((k: { kid: string }) => k.kid)).not.toContain(kid);
  });

  it('shows a requester only the certificates it was issued', async () => {
    const alice = await requesterToken('ui-alice');
    const bob = await requesterToken('ui-bob');
    const mine = await issue(alice.token, 'alice.ui.example.test', 51);
    const theirs = await issue(bob.token, 'bob.ui.example.test', 52);
    const { context, page } = await newPage(375);
    await signIn(page, alice.token);
    await page.getByRole('heading', { name: 'Certificates' }).waitFor();
    // admin pages are not offered
    expect(await page.getByRole('navigation').getByRole('link').allTextContents()).toEqual(['Certificates']);
    await page.getByRole('link', { name: mine }).waitFor();
    expect(await page.getByRole('link', { name: theirs }).count()).toBe(0);
    // searching for the other's name finds nothing
    await page.getByLabel('Serial or name').fill('bob.ui');
    await page.getByRole('button', { name: 'Search' }).click();
    await page.getByText('No certificate matches.').waitFor();
    await expectAccessible(page, 'requester certificates');
    await shoot(page, '09-requester-certificates');
    // and opening it by serial shows the API's refusal
    await page.goto(`${ca.url}/ui/#/certificates/${theirs}`);
    await expect(page.getByRole('alert').textContent()).resolves.toContain(`no certificate with serial ${theirs}`);
    await context.close();
  });

  it('shows the overview: chain, HSM, CRL, OCSP signer, counts and the chart of the last days', async () => {
    const { page } = admin;
    await page.getByRole('link', { name: 'Overview' }).click();
    await page.getByRole('heading', { name: 'CA chain' }).waitFor();
    const text = await page.locator('main').textContent();
    expect(text).toContain('hsmca Issuing CA');
    expect(text).toContain('hsmca Root CA');
    expect(text).toMatch(/Software HSM: ok/);
    expect(text).toMatch(/CRL number\s*\d+/);
    expect(text).toContain('OCSP Responder');
    const api = (await ca.api('GET', '/api/v1/overview')).body;
    expect(api.counts.revoked).toBeGreaterThanOrEqual(1);
    expect(text).toContain(`Revoked${api.counts.revoked}`);
    // this test run issued at least six certificates and revoked two, this hour
    const chart = page.getByRole('img', { name: /Issuances and revocations per hour over the last 7 days/ });
    expect(await chart.getAttribute('aria-label')).toMatch(/: ([6-9]|\d\d+) issued, ([2-9]|\d\d+) revoked/);
    expect(await page.locator('rect.bar-issued').count()).toBeGreaterThanOrEqual(1);
    expect(await page.locator('rect.bar-revoked').count()).toBeGreaterThanOrEqual(1);
    await expectAccessible(page, 'overview');
    await shoot(page, '02-overview');
    await admin.context.close();
  });

  it('wrote no error to the browser console (a CSP violation would be one)', () => {
    // the refusals the tests provoked on purpose: the wrong token (401), the bad scope (400), the other's certificate (404)
    expect(consoleErrors.filter((e) => !/Failed to load resource: the server responded with a status of 40[0134]/.test(e))).toEqual([]);
  });
});
