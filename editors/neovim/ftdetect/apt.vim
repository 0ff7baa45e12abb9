" *.apt files are .apt policies (aptc). An autocmd rather than vim.filetype.add, which
" Neovim 0.7 (Debian's) does not have.
autocmd BufNewFile,BufRead *.apt setfiletype apt
