// The dashboard: hash routes (#/, #/claim/ID, #/instance/NAME, #/history, #/drift); every page
// is fetched again when the server says the policy or the store changed.
import { render } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { follow, type Graph } from './api';
import { GraphPage } from './graph';
import { ClaimPage, DriftPage, HistoryPage, InstancePage, useData } from './pages';

function route(): string[] {
  return location.hash.replace(/^#\/?/, '').split('/').map(decodeURIComponent);
}

function App() {
  const [path, setPath] = useState(route());
  const [version, setVersion] = useState(0);
  useEffect(() => {
    const onHash = () => setPath(route());
    addEventListener('hashchange', onHash);
    const stop = follow(() => setVersion((v) => v + 1));
    return () => { removeEventListener('hashchange', onHash); stop(); };
  }, []);
  const [summary, summaryError] = useData<any>('/api/v1/policy', version);
  const [session] = useData<{ read_only: boolean; rollback_as: string | null }>('/api/v1/session', 0);
  const [graph] = useData<Graph>(path[0] === '' || path[0] === undefined ? '/api/v1/graph' : null, version);
  let page;
  switch (path[0]) {
    case 'claim': page = <ClaimPage id={path.slice(1).join('/')} version={version} />; break;
    case 'instance': page = <InstancePage name={path[1]} version={version} />; break;
    case 'history': page = <HistoryPage version={version} session={session} refresh={() => setVersion((v) => v + 1)} />; break;
    case 'drift': page = <DriftPage version={version} />; break;
    default: page = summary?.error ? null : graph ? <GraphPage graph={graph} /> : <p>loading…</p>;
  }
  return (
    <>
      <header>
        <nav aria-label="pages">
          <strong>aptc</strong>
          <a href="#/">graph</a><a href="#/history">history</a><a href="#/drift">drift</a>
        </nav>
        {summary && !summary.error && (
          <span class="summary">
            {summary.claims.resolved} resolved · {summary.claims.rejected} rejected · {summary.claims.failed} failed ·{' '}
            {summary.instances.total} instances · {session?.read_only === false ? `rollbacks as ${session.rollback_as}` : 'read-only'}
          </span>
        )}
      </header>
      <main>
        {summaryError && <p class="error" role="alert">{summaryError}</p>}
        {summary?.error && <pre class="error" role="alert">{summary.error}</pre>}
        {page}
      </main>
    </>
  );
}

render(<App />, document.getElementById('app')!);
