import { defineConfig } from 'vite';

// Plain file names (no content hashes), so a rebuild of the same sources gives the same files:
// CI rebuilds and compares them with the committed ones.
export default defineConfig({
  esbuild: { jsx: 'automatic', jsxImportSource: 'preact' },
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    rollupOptions: {
      output: { entryFileNames: 'app.js', chunkFileNames: '[name].js', assetFileNames: '[name][extname]' },
    },
  },
});
