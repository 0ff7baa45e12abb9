// The dashboard at 1,000 instances: from navigation start to the page's `graph-drawn` mark (the
// graph fetched, laid out by dagre and painted) in headless Chromium, five page loads, median.
// A benchmark, not a test: `node benches/ui-graph.mjs` (after `cargo build --example synth --bin
// aptc` and `npm ci` in ui/web; APTC picks the aptc binary). Figures in docs/performance.md.
import { createRequire } from 'node:module';
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { tmpdir } from 'node:os';

const root = resolve(import.meta.dirname, '..');
const { chromium } = createRequire(join(root, 'ui/web/package.json'))('playwright-core');
const aptc = process.env.APTC ?? join(root, 'target/debug/aptc');
const scratch = mkdtempSync(join(tmpdir(), 'aptc-ui-bench-'));
const policy = join(scratch, 'policy');
// 6,500 lines of synthetic policy: 144 claims, 1,014 instances (benches/synth.rs).
execFileSync(join(root, 'target/debug/examples/synth'), ['--lines', '6500', '--out', policy], { stdio: 'ignore' });

const server = spawn(aptc, ['ui', '--listen', '127.0.0.1:0', '--state', join(scratch, 'state.db'), policy]);
const url = await new Promise((ok) => {
  let out = '';
  server.stdout.on('data', (d) => { out += d; const m = out.match(/aptc ui: (http:\/\/\S+)/); if (m) ok(m[1]); });
});
const context = await chromium.launchPersistentContext(mkdtempSync(join(scratch, 'profile-')), {
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  headless: true,
  viewport: { width: 1400, height: 900 },
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const page = await context.newPage();
const times = [];
let instances = 0;
for (let run = 0; run < 6; run++) {
  await page.goto(url + `?run=${run}`);
  await page.waitForFunction(() => performance.getEntriesByName('graph-drawn').length > 0, null, { timeout: 60000 });
  const drawn = await page.evaluate(() => performance.getEntriesByName('graph-drawn')[0].startTime);
  if (process.env.BREAKDOWN) console.log(await page.evaluate(() => JSON.stringify([...performance.getEntriesByType('resource').map((r) => [r.name.replace(/.*\//, ''), Math.round(r.startTime), Math.round(r.responseEnd)]), ...performance.getEntriesByType('mark').map((m) => [m.name, Math.round(m.startTime)])])));
  instances = await page.evaluate(async () => (await (await fetch('/api/v1/graph')).json()).instances.length);
  if (run > 0) times.push(drawn); // the first load warms the server's and the browser's caches
}
times.sort((a, b) => a - b);
console.log(`${instances} instances: navigation start to graph-drawn, median of ${times.length}: ${Math.round(times[times.length >> 1])} ms (min ${Math.round(times[0])}, max ${Math.round(times[times.length - 1])})`);
await context.close();
server.kill();
rmSync(scratch, { recursive: true, force: true });
