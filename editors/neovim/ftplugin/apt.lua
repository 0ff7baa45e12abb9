-- Buffer settings for .apt policies: the canonical layout of `aptc fmt` (four spaces), comments,
-- and tree-sitter highlighting and folding when the `apt` parser is installed.
vim.bo.commentstring = '// %s'
vim.bo.comments = ':///,://'
vim.bo.expandtab = true
vim.bo.shiftwidth = 4
vim.bo.softtabstop = 4
vim.bo.tabstop = 4

-- (vim.treesitter.start and vim.wo[0][0] need Neovim 0.10; on older ones this is skipped.)
if vim.treesitter.start and pcall(vim.treesitter.start, 0, 'apt') then
  vim.wo[0][0].foldmethod = 'expr'
  vim.wo[0][0].foldexpr = 'v:lua.vim.treesitter.foldexpr()'
  vim.wo[0][0].foldenable = false
end

vim.b.undo_ftplugin = (vim.b.undo_ftplugin or '') .. '\n setlocal commentstring< comments< expandtab< shiftwidth< softtabstop< tabstop<'
