// Syntax highlighting of one line of .apt source, as spans of text (never markup from the text).
const TOKEN = /(#.*$|\/\/.*$)|("(?:[^"\\]|\\.)*")|\b(namespace|contract|service|context|rule|claim|component|criteria|require_all|require_any|require_none|allocation|uses|chart|manifests|values|discovery|user|team|cluster|grant|owner|import|test|when|if|then|else|true|false)\b|(\b\d+\b)/g;

export function highlight(line: string) {
  const parts = [];
  let last = 0;
  for (const m of line.matchAll(TOKEN)) {
    if (m.index! > last) parts.push(line.slice(last, m.index));
    const cls = m[1] ? 'tok-comment' : m[2] ? 'tok-string' : m[3] ? 'tok-keyword' : 'tok-number';
    parts.push(<span class={cls}>{m[0]}</span>);
    last = m.index! + m[0].length;
  }
  parts.push(line.slice(last));
  return parts;
}
