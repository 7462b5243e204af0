// Builds the dashboard into services/web/static/ (or the directory given as the argument).
// Output names carry a hash of their content and manifest.json records the package version and
// a hash of every build input, so the Python side and tests can tell which sources a committed
// bundle came from (tests/unit/test_dashboard_assets.py computes the same source hash).
import { build } from 'esbuild';
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const out = resolve(process.argv[2] ?? join(here, '..', 'services', 'web', 'static'));
const pkg = JSON.parse(readFileSync(join(here, 'package.json'), 'utf8'));

function sourceHash() {
  const files = ['build.mjs', 'package.json', 'package-lock.json',
    ...readdirSync(join(here, 'src')).sort().map((f) => `src/${f}`)];
  const hash = createHash('sha256');
  for (const file of files) {
    hash.update(`${file}\n`);
    hash.update(readFileSync(join(here, file)));
    hash.update('\n');
  }
  return hash.digest('hex');
}

async function bundle(entry) {
  const result = await build({
    entryPoints: [join(here, 'src', entry)], bundle: true, minify: true, write: false,
    format: 'iife', target: ['es2020'], charset: 'utf8', legalComments: 'eof',
    logLevel: 'warning', absWorkingDir: here,
  });
  return result.outputFiles[0].contents;
}

function named(base, ext, contents) {
  const digest = createHash('sha256').update(contents).digest('hex').slice(0, 12);
  return `${base}-${digest}.${ext}`;
}

// The dashboard (app.*) and the OpenAPI docs page (docs.*, Swagger UI): both served by the API
// from this build, so neither page loads script from anywhere else.
const outputs = {
  'app.js': await bundle('main.js'),
  'app.css': await bundle('style.css'),
  'docs.js': await bundle('docs.js'),
  'docs.css': await bundle('docs.css'),
};
const files = Object.fromEntries(Object.entries(outputs).map(([logical, contents]) => {
  const [base, ext] = logical.split('.');
  return [logical, named(base, ext, contents)];
}));
mkdirSync(out, { recursive: true });
for (const old of readdirSync(out)) {
  if (/^(app|docs)-[0-9a-f]{12}\.(js|css)$/.test(old)) rmSync(join(out, old));
}
for (const [logical, contents] of Object.entries(outputs)) writeFileSync(join(out, files[logical]), contents);
for (const page of ['index.html', 'docs.html']) {
  let html = readFileSync(join(here, 'src', page), 'utf8');
  for (const [key, value] of Object.entries({ ...files, version: pkg.version })) {
    html = html.replaceAll(`{{${key}}}`, value);
  }
  writeFileSync(join(out, page), html);
}
const manifest = { version: pkg.version, source_sha256: sourceHash(), files };
writeFileSync(join(out, 'manifest.json'), `${JSON.stringify(manifest, null, 2)}\n`);
console.log(`dashboard ${pkg.version} built into ${out}: ${Object.entries(outputs)
  .map(([logical, contents]) => `${files[logical]} (${contents.length} B)`).join(', ')}`);
