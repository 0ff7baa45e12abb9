-- An example of using the aptc editor support from your init.lua. Adjust `aptc_repo`.
local aptc_repo = vim.fn.expand('~/src/aptc')

-- ftdetect/apt.lua, ftplugin/apt.lua, lsp/aptc.lua and queries/apt/ (a link to the
-- tree-sitter grammar's queries) come from editors/neovim; parser/apt.so is built there
-- (see README.md).
vim.opt.runtimepath:append(aptc_repo .. '/editors/neovim')

-- Language server (Neovim 0.11+). `cmd` may point at a build: { aptc_repo .. '/target/release/aptc', 'lsp' }.
if vim.lsp.config then
  vim.lsp.config('aptc', { cmd = { 'aptc', 'lsp' } })
  vim.lsp.enable('aptc')
else
  -- Neovim 0.10 with nvim-lspconfig: register aptc as a custom server.
  local configs = require('lspconfig.configs')
  if not configs.aptc then
    configs.aptc = {
      default_config = {
        cmd = { 'aptc', 'lsp' },
        filetypes = { 'apt' },
        root_dir = require('lspconfig.util').root_pattern('.git'),
        single_file_support = true,
      },
    }
  end
  require('lspconfig').aptc.setup({})
end

-- Format on save through the language server (`aptc fmt`), where it can format.
vim.api.nvim_create_autocmd('LspAttach', {
  callback = function(args)
    local client = vim.lsp.get_client_by_id(args.data.client_id)
    if client == nil or client.name ~= 'aptc' then
      return
    end
    local formats = vim.fn.has('nvim-0.11') == 1 and client:supports_method('textDocument/formatting')
      or (vim.fn.has('nvim-0.11') == 0 and client.supports_method('textDocument/formatting'))
    if formats then
      vim.api.nvim_create_autocmd('BufWritePre', {
        buffer = args.buf,
        callback = function()
          vim.lsp.buf.format({ bufnr = args.buf, id = client.id, timeout_ms = 2000 })
        end,
      })
    end
  end,
})
