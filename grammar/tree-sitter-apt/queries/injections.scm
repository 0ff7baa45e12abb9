; The right operand of `matches` is a regular expression (Rust regex syntax, RE2 family).
((comparison_expression
  operator: "matches"
  right: (string
    .
    (string_content) @injection.content .))
  (#set! injection.language "regex"))

; TODO/FIXME/NOTE markers in comments (nvim-treesitter's `comment` parser).
([(line_comment) (block_comment) (doc_comment)] @injection.content
  (#set! injection.language "comment"))
