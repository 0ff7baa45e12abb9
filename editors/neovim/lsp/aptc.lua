-- The aptc language server, for Neovim 0.11+: with this directory on 'runtimepath',
-- `vim.lsp.enable('aptc')` starts `aptc lsp` for .apt buffers.
---@type vim.lsp.Config
return {
  cmd = { 'aptc', 'lsp' },
  filetypes = { 'apt' },
  root_markers = { '.git' },
}
