// The claim, instance, history and drift pages. Values from the policy are shown as text only.
import { useEffect, useState } from 'preact/hooks';
import { ApiError, get, post, type Origin } from './api';
import { highlight } from './highlight';

export function useData<T>(path: string | null, version: number): [T | null, string | null] {
  const [data, setData] = useState<T | null>(null);
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    if (!path) return;
    let live = true;
    get<T>(path).then((d) => { if (live) { setData(d); setError(null); } })
      .catch((e: Error) => { if (live) setError(e.message); });
    return () => { live = false; };
  }, [path, version]);
  return [data, error];
}

const Json = ({ value }: { value: unknown }) => <pre class="json">{JSON.stringify(value, null, 2)}</pre>;

function SourceView({ origin, version }: { origin: Origin; version: number }) {
  const [file] = useData<{ path: string; text: string }>(`/api/v1/source?file=${encodeURIComponent(origin.file)}`, version);
  useEffect(() => { document.getElementById(`line-${origin.line}`)?.scrollIntoView({ block: 'center' }); }, [file, origin]);
  if (!file) return null;
  return (
    <pre class="source" tabIndex={0} aria-label={`source ${origin.file}`}>
      {file.text.split('\n').map((line, k) => (
        <div id={`line-${k + 1}`} class={k + 1 === origin.line ? 'line hit' : 'line'}>
          <span class="ln">{k + 1}</span>{highlight(line)}
        </div>
      ))}
    </pre>
  );
}

interface Decision { step: string; [key: string]: unknown }
interface Claim {
  claim: string; origin: Origin; status: string; reason: string | null; reason_origin: Origin | null;
  decisions: Decision[]; notes: string[];
}

function describe(d: Decision): string {
  switch (d.step) {
    case 'enter_contract': return `contract ${d.contract}`;
    case 'context': return `context ${d.context}: ${d.matched ? 'matches, chosen' : 'does not match'}`;
    case 'rule': return d.fired ? `rule ${d.rule} fired: ${(d.effect as string[]).join('; ') || 'no action'}` : `rule ${d.rule}: criteria false`;
    case 'placement': return `placed on cluster ${String(d.cluster).replace(/^system\./, '')}, namespace ${d.k8s_namespace}`;
    case 'allocation': return (d.keys as string[]).length ? `allocated per ${(d.keys as string[]).join(', ')}` : 'no allocation keys: shared';
    case 'component': return d.included ? `component ${d.key}` : `component ${d.key} skipped: its when is false`;
    default: return d.step;
  }
}

const at = (o: Origin) => `${o.file}:${o.line}:${o.column}`;

export function ClaimPage({ id, version }: { id: string; version: number }) {
  const [data, error] = useData<{ claims: Claim[] }>(`/api/v1/claims/${encodeURIComponent(id)}`, version);
  const [shown, setShown] = useState<Origin | null>(null);
  const claim = data?.claims[0];
  useEffect(() => { if (claim) setShown(claim.reason_origin ?? claim.origin); }, [claim?.claim]);
  if (error) return <p class="error" role="alert">{error}</p>;
  if (!claim) return <p>loading…</p>;
  const link = (o: Origin) => <button class="link" onClick={() => setShown(o)}>{at(o)}</button>;
  return (
    <section>
      <h1>claim {claim.claim}</h1>
      <p class={`verdict ${claim.status}`} data-testid="verdict">
        {claim.status === 'resolved' ? 'resolved' : `${claim.status.toUpperCase()}: ${claim.reason ?? ''}`}
        {claim.reason_origin && <> at {link(claim.reason_origin)}</>}
      </p>
      <p>written at {link(claim.origin)}</p>
      <h2>decision chain</h2>
      <ol class="chain" data-testid="chain">
        {claim.decisions.map((d) => (
          <li class={`step ${d.step}`} style={{ marginLeft: `${Number(d.depth ?? 0) * 1.5}em` }}>
            {describe(d)} {d.origin ? link(d.origin as Origin) : null}
          </li>
        ))}
      </ol>
      {claim.notes.map((n) => <p class="note">note: {n}</p>)}
      {shown && <SourceView origin={shown} version={version} />}
    </section>
  );
}

interface Rendered { renderer: string; helm: string | null; files: { path: string; text: string }[]; error: string | null }

/** What the instance deploys, rendered (a chart by `helm template`, which takes a moment). */
function Manifests({ name, version }: { name: string; version: number }) {
  const [r, error] = useData<Rendered>(`/api/v1/instances/${encodeURIComponent(name)}/manifests`, version);
  const problem = error ?? r?.error;
  return (
    <section aria-labelledby="rendered" data-testid="manifests">
      <h2 id="rendered">rendered manifests</h2>
      {problem ? <p class="error" role="alert">could not render: {problem}</p>
        : !r ? <p>rendering…</p>
        : <>
            <p>by {r.renderer}{r.helm ? ` (helm ${r.helm})` : ''}, secrets as ***</p>
            {r.files.length === 0 && <p>no files</p>}
            {r.files.map((f) => <><h3>{f.path}</h3><pre>{f.text}</pre></>)}
          </>}
    </section>
  );
}

export function InstancePage({ name, version }: { name: string; version: number }) {
  const [i, error] = useData<any>(`/api/v1/instances/${encodeURIComponent(name)}`, version);
  if (error) return <p class="error" role="alert">{error}</p>;
  if (!i) return <p>loading…</p>;
  return (
    <section>
      <h1>instance {i.name}</h1>
      <dl>
        <dt>key</dt><dd>{i.key}</dd>
        <dt>on</dt><dd>cluster {String(i.cluster).replace(/^system\./, '')}, namespace {i.k8s_namespace}</dd>
        <dt>from</dt><dd>contract {i.contract} / context {i.context} → service {i.service}, component {i.component}</dd>
        <dt>last changed</dt><dd>{i.last_change ? <a href="#/history">revision {i.last_change.revision} by {i.last_change.user} at {i.last_change.time}</a> : 'never deployed'}</dd>
      </dl>
      <h2>consumers</h2>
      <ul>{i.needed_by.map((u: any) => <li><a href={`#/claim/${encodeURIComponent(u.claim)}`}>{u.claim}</a> (depth {u.depth})</li>)}</ul>
      <h2>values</h2><Json value={i.values} />
      <h2>discovery</h2><Json value={i.discovery} />
      <h2>kind</h2><Json value={i.kind} />
      <Manifests name={i.name} version={version} />
    </section>
  );
}

interface Revision { number: number; time: string; user: string; cause: any; policy: string; duration_ms: number; actions: any[]; finished: boolean }

const cause = (c: any) => (c.type === 'rollback' ? `rollback to ${c.to}` : `deploy ${(c.paths ?? []).join(' ')}`);
const outcome = (a: any) => Object.keys(a.outcome ?? {})[0] ?? String(a.outcome);

function RevisionView({ n, version }: { n: number; version: number }) {
  const [r, error] = useData<any>(`/api/v1/revisions/${n}`, version);
  if (error) return <p class="error">{error}</p>;
  if (!r) return null;
  return (
    <div>
      <h2>revision {r.number}: {cause(r.cause)} by {r.user}</h2>
      <table>
        <thead><tr><th>action</th><th>instance</th><th>where</th><th>why</th><th>outcome</th><th>start</th><th>took</th></tr></thead>
        <tbody>{r.actions.map((a: any) => (
          <tr><td>{a.op}</td><td>{a.name}</td><td>{a.place}</td><td>{a.why}</td><td>{outcome(a)}</td><td>{a.started_ms} ms</td><td>{a.duration_ms} ms</td></tr>
        ))}</tbody>
      </table>
    </div>
  );
}

function DiffView({ from, to, version }: { from: number; to: number; version: number }) {
  const [d, error] = useData<any>(`/api/v1/diff?from=${from}&to=${to}`, version);
  if (error) return <p class="error">{error}</p>;
  if (!d) return null;
  return (
    <div data-testid="diff">
      <h2>from revision {from} to {to}</h2>
      <p>{d.added.length} added, {d.removed.length} removed, {d.changed.length} changed</p>
      <ul>
        {d.added.map((k: string) => <li class="added">+ {k}</li>)}
        {d.removed.map((k: string) => <li class="removed">− {k}</li>)}
        {d.changed.map((c: any) => <li>~ {c.name}<ul>{c.fields.map((f: any) => <li>{f.path}: {f.old} → {f.new}</li>)}</ul></li>)}
      </ul>
    </div>
  );
}

function Rollback({ to, onDone }: { to: number; onDone: () => void }) {
  const [plan, setPlan] = useState<any>(null);
  const [message, setMessage] = useState<string | null>(null);
  const ask = () => post<any>(`/api/v1/rollback/${to}`, {}).then(setPlan).catch((e: ApiError) => setMessage(e.message));
  const confirm = () => post<any>(`/api/v1/rollback/${to}`, { digest: plan.digest })
    .then((r) => { setPlan(null); setMessage(`rollback to ${to}: ${r.report.status}, revision ${r.report.revision}`); onDone(); })
    .catch((e: ApiError) => setMessage(e.message));
  return (
    <span>
      <button onClick={ask} data-testid={`rollback-${to}`}>roll back to {to}…</button>
      {message && <p role="status" class="message" data-testid="rollback-message">{message}</p>}
      {plan && (
        <div role="dialog" aria-label="rollback plan" class="dialog" data-testid="rollback-plan">
          <h3>rolling back to revision {to} would ({plan.report.status}):</h3>
          <ul>{plan.report.actions.filter((a: any) => a.kind !== 'unchanged').map((a: any) => <li>{a.kind} {a.instance.name} ({a.reason})</li>)}</ul>
          <p>{plan.report.actions.filter((a: any) => a.kind === 'unchanged').length} instances unchanged</p>
          {plan.report.status === 'dry_run'
            ? <button onClick={confirm} data-testid="rollback-confirm">apply this plan</button>
            : <p>nothing to change</p>}
          <button onClick={() => setPlan(null)}>cancel</button>
        </div>
      )}
    </span>
  );
}

export function HistoryPage({ version, session, refresh }: { version: number; session: { read_only: boolean } | null; refresh: () => void }) {
  const [revisions, error] = useData<Revision[]>('/api/v1/revisions', version);
  const [shown, setShown] = useState<number | null>(null);
  const [pair, setPair] = useState<number[]>([]);
  if (error) return <p class="error">{error}</p>;
  if (!revisions) return <p>loading…</p>;
  if (!revisions.length) return <p>no revisions yet: deploy with `aptc deploy`</p>;
  // From the pair as it is when the change applies, not as this render saw it: two quick clicks
  // (before a render) would otherwise lose the first.
  const toggle = (n: number) => setPair((now) => (now.includes(n) ? now.filter((p) => p !== n) : [...now, n].slice(-2)));
  const sorted = [...pair].sort((a, b) => a - b);
  return (
    <section>
      <h1>history</h1>
      <table data-testid="revisions">
        <thead><tr><th>compare</th><th>revision</th><th>when</th><th>who</th><th>what</th><th>actions</th><th></th></tr></thead>
        {/* Keyed by revision: a refresh adds rows at the top, and a row's state (a compare tick, an
            open rollback plan) must stay with its revision, not with its position. */}
        <tbody>{[...revisions].reverse().map((r) => (
          <tr key={r.number}>
            <td><input type="checkbox" aria-label={`compare revision ${r.number}`} checked={pair.includes(r.number)} onChange={() => toggle(r.number)} /></td>
            <td><button class="link" onClick={() => setShown(r.number)}>{r.number}</button>{r.finished ? '' : ' (not finished)'}</td>
            <td>{r.time}</td><td>{r.user}</td><td>{cause(r.cause)}</td><td>{r.actions.length}</td>
            <td>{session && !session.read_only && <Rollback to={r.number} onDone={refresh} />}</td>
          </tr>
        ))}</tbody>
      </table>
      {sorted.length === 2 && <DiffView from={sorted[0]} to={sorted[1]} version={version} />}
      {shown !== null && <RevisionView n={shown} version={version} />}
    </section>
  );
}

interface Drifted { name: string; place: string; kind: string; changed: string[]; added: string[]; removed: string[] }
interface DriftAnswer {
  checked?: { time: string; user: string | null; cause: string } | null;
  revision: number | null; target: string | null; drift: Drifted[];
}

const checkedBy: Record<string, string> = {
  deploy: 'aptc deploy --refresh', dry_run: 'aptc deploy --refresh --dry-run', reconcile: 'aptc watch',
};

function DriftList({ d }: { d: DriftAnswer }) {
  return (
    <>
      <p>the target ({d.target}) against revision {d.revision}: {d.drift.length ? `${d.drift.length} instances drifted` : 'as deployed'}</p>
      <ul>{d.drift.map((x) => <li>{x.name} on {x.place}: {x.kind} {[...x.changed, ...x.added, ...x.removed].join(', ')}</li>)}</ul>
    </>
  );
}

export function DriftPage({ version }: { version: number }) {
  const [d, error] = useData<DriftAnswer>('/api/v1/drift', version);
  const [now, setNow] = useState<DriftAnswer | null>(null);
  const [nowError, setNowError] = useState<string | null>(null);
  const check = () => { setNowError(null); get<DriftAnswer>('/api/v1/drift/now').then(setNow).catch((e: Error) => setNowError(e.message)); };
  if (error) return <p class="error" role="alert">{error}</p>;
  if (!d) return <p>loading…</p>;
  return (
    <section>
      <h1>drift</h1>
      {d.checked
        ? <div data-testid="drift-last">
            <p>last checked at <time dateTime={d.checked.time}>{d.checked.time}</time> by {d.checked.user ?? 'an unattended check'} ({checkedBy[d.checked.cause] ?? d.checked.cause})</p>
            <DriftList d={d} />
          </div>
        : <p data-testid="drift-last">no drift check recorded yet: run <code>aptc deploy --refresh --dry-run</code> or <code>aptc watch</code></p>}
      <h2>now</h2>
      <button onClick={check} data-testid="drift-now">check the target now</button>
      {nowError && <p class="error" role="alert">{nowError}</p>}
      {now && (now.revision === null ? <p>nothing deployed yet</p> : <div data-testid="drift-now-result"><DriftList d={now} /><p>(shown only: not kept)</p></div>)}
    </section>
  );
}
