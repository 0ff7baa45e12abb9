-- *.apt files are .apt policies (aptc).
vim.filetype.add({ extension = { apt = 'apt' } })
