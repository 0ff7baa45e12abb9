// A list that renders only the rows in view (and a few around them): a thousand instances stay cheap.
import type { ComponentChildren } from 'preact';
import { useState } from 'preact/hooks';

export function VirtualList<T>({ items, rowHeight, height, render }: {
  items: T[]; rowHeight: number; height: number; render: (item: T) => ComponentChildren;
}) {
  const [top, setTop] = useState(0);
  const first = Math.max(0, Math.floor(top / rowHeight) - 5);
  const last = Math.min(items.length, Math.ceil((top + height) / rowHeight) + 5);
  return (
    <div class="virtual" style={{ height: `${height}px`, overflowY: 'auto' }} tabIndex={0}
      onScroll={(e) => setTop((e.target as HTMLElement).scrollTop)}>
      <ul style={{ height: `${items.length * rowHeight}px`, position: 'relative', margin: 0, padding: 0 }}>
        {items.slice(first, last).map((item, k) => (
          <li style={{ position: 'absolute', top: `${(first + k) * rowHeight}px`, height: `${rowHeight}px`, listStyle: 'none' }}>
            {render(item)}
          </li>
        ))}
      </ul>
    </div>
  );
}
