'use client';
import { useEffect, useState, type ReactNode } from 'react';

/**
 * Renders its children in the browser only. Every page shows data fetched with the visitor's
 * credential, so the static export has nothing to prerender there; rendering on the client only
 * means the first client render can never disagree with prerendered HTML (a hydration error).
 */
export function Mounted({ children }: { children: ReactNode }) {
  const [mounted, setMounted] = useState(false);
  useEffect(() => setMounted(true), []);
  return mounted ? children : <p className="empty">Loading…</p>;
}
