// The JSON API (docs/ui.md). The token of a non-loopback dashboard comes in the first page's
// address (?token=...), is kept for the tab's session and sent with every request.

const fromUrl = new URLSearchParams(location.search).get('token');
if (fromUrl) sessionStorage.setItem('aptc-token', fromUrl);
const token = sessionStorage.getItem('aptc-token');

export class ApiError extends Error {
  constructor(public status: number, message: string) {
    super(message);
  }
}

async function request<T>(path: string, init: RequestInit = {}): Promise<T> {
  const headers: Record<string, string> = { Accept: 'application/json' };
  if (token) headers.Authorization = `Bearer ${token}`;
  if (init.body) headers['Content-Type'] = 'application/json';
  const response = await fetch(path, { ...init, headers });
  const body = await response.json().catch(() => ({ error: response.statusText }));
  if (!response.ok) throw new ApiError(response.status, body.error ?? response.statusText);
  return body as T;
}

export const get = <T>(path: string) => request<T>(path);
export const post = <T>(path: string, body: unknown) =>
  request<T>(path, { method: 'POST', body: JSON.stringify(body) });

/** Calls `onChange` whenever the policy files or the store change (server-sent events). */
export function follow(onChange: () => void): () => void {
  const events = new EventSource('/api/v1/events' + (token ? `?token=${encodeURIComponent(token)}` : ''));
  events.addEventListener('change', onChange);
  return () => events.close();
}

export interface Origin { file: string; line: number; column: number }
export interface GraphClaim {
  claim: string; status: 'resolved' | 'rejected' | 'failed'; reason: string | null;
  reason_origin: Origin | null; origin: Origin; root: string | null; contract: string;
  consumer: { user?: string; team?: string } | null;
  /** The consuming team, or the consuming user's team (`user.team`); null when the user has none. */
  team: string | null;
}
export interface GraphInstance {
  key: string; name: string; id: string; kind: string; cluster: string; k8s_namespace: string;
  contract: string; context: string; service: string; component: string; edges: string[]; claims: string[];
}
export interface Graph { claims: GraphClaim[]; instances: GraphInstance[] }
