#!/usr/bin/env node
// Builds dist/ when it is missing or older than any TypeScript source, so that
// `npm start` and `npx hsmca` work straight after `npm ci`.
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const { execFileSync } = require('node:child_process');

const root = path.resolve(__dirname, '..');

function newest(dir, exts = ['.ts']) {
  let t = 0;
  if (!fs.existsSync(dir)) return t;
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) t = Math.max(t, newest(p, exts));
    else if (exts.some((x) => e.name.endsWith(x))) t = Math.max(t, fs.statSync(p).mtimeMs);
  }
  return t;
}

/** The console (ui/ → dist/ui, scripts/build-ui.js) when missing or older than its sources. */
async function buildUiIfNeeded() {
  const marker = path.join(root, 'dist', 'ui', 'app.js');
  const srcTime = Math.max(newest(path.join(root, 'ui'), ['.js', '.css', '.html', '.svg']), fs.statSync(path.join(root, 'package-lock.json')).mtimeMs);
  if (fs.existsSync(marker) && fs.statSync(marker).mtimeMs >= srcTime) return;
  process.stderr.write('hsmca: building the console (esbuild)...\n');
  await require('./build-ui').buildUi();
}

function buildIfNeeded() {
  const marker = path.join(root, 'dist', 'src', 'cli', 'main.js');
  const srcTime = Math.max(newest(path.join(root, 'src')), newest(path.join(root, 'migrations')));
  if (fs.existsSync(marker) && fs.statSync(marker).mtimeMs >= srcTime) return;
  process.stderr.write('hsmca: building (tsc)...\n');
  const tsc = require.resolve('typescript/bin/tsc', { paths: [root] });
  execFileSync(process.execPath, [tsc, '-p', path.join(root, 'tsconfig.build.json')], { stdio: 'inherit', cwd: root });
  const now = new Date();
  fs.utimesSync(marker, now, now);
}

module.exports = { buildIfNeeded, buildUiIfNeeded };
if (require.main === module) {
  buildIfNeeded();
  buildUiIfNeeded().catch((e) => {
    process.stderr.write(`hsmca: building the console failed: ${e.message}\n`);
    process.exit(1);
  });
}
