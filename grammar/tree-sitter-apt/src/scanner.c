// External scanner of the .apt grammar: the text of string literals (which must not be taken
// for comments, and stops before `${`), and nested block comments.

#include "tree_sitter/parser.h"

#include <stdbool.h>

enum TokenType {
  STRING_CONTENT,
  BLOCK_COMMENT,
  ERROR_SENTINEL,
};

void *tree_sitter_apt_external_scanner_create(void) { return NULL; }

void tree_sitter_apt_external_scanner_destroy(void *payload) { (void)payload; }

unsigned tree_sitter_apt_external_scanner_serialize(void *payload, char *buffer) {
  (void)payload;
  (void)buffer;
  return 0;
}

void tree_sitter_apt_external_scanner_deserialize(void *payload, const char *buffer, unsigned length) {
  (void)payload;
  (void)buffer;
  (void)length;
}

static inline void advance(TSLexer *lexer) { lexer->advance(lexer, false); }

// Characters of a string up to (not including) `"`, `\`, a line break, or `${`. A `$` that no
// `{` follows is text.
static bool scan_string_content(TSLexer *lexer) {
  bool has_content = false;
  for (;;) {
    lexer->mark_end(lexer);
    switch (lexer->lookahead) {
      case '"':
      case '\\':
      case '\n':
        goto done;
      case '$':
        advance(lexer);
        if (lexer->lookahead == '{') {
          goto done;  // the token ends before the `$` (the last mark_end)
        }
        has_content = true;
        continue;
      default:
        if (lexer->eof(lexer)) {
          goto done;
        }
        advance(lexer);
        has_content = true;
    }
  }
done:
  lexer->result_symbol = STRING_CONTENT;
  return has_content;
}

// `/* … */`, nesting allowed. An unclosed comment runs to the end of the file (aptc reports
// APT0003; highlighting it as a comment is what the writer sees anyway).
static bool scan_block_comment(TSLexer *lexer) {
  while (lexer->lookahead == ' ' || lexer->lookahead == '\t' || lexer->lookahead == '\n' ||
         lexer->lookahead == '\r' || lexer->lookahead == '\f' || lexer->lookahead == 0xFEFF) {
    lexer->advance(lexer, true);
  }
  if (lexer->lookahead != '/') {
    return false;
  }
  advance(lexer);
  if (lexer->lookahead != '*') {
    return false;
  }
  advance(lexer);
  unsigned depth = 1;
  while (depth > 0 && !lexer->eof(lexer)) {
    if (lexer->lookahead == '*') {
      advance(lexer);
      if (lexer->lookahead == '/') {
        advance(lexer);
        depth--;
      }
    } else if (lexer->lookahead == '/') {
      advance(lexer);
      if (lexer->lookahead == '*') {
        advance(lexer);
        depth++;
      }
    } else {
      advance(lexer);
    }
  }
  lexer->mark_end(lexer);
  lexer->result_symbol = BLOCK_COMMENT;
  return true;
}

bool tree_sitter_apt_external_scanner_scan(void *payload, TSLexer *lexer, const bool *valid_symbols) {
  (void)payload;
  if (valid_symbols[ERROR_SENTINEL]) {
    // Error recovery: every symbol is valid. Only comments are safe to recognise here.
    return scan_block_comment(lexer);
  }
  if (valid_symbols[STRING_CONTENT]) {
    return scan_string_content(lexer);
  }
  if (valid_symbols[BLOCK_COMMENT]) {
    return scan_block_comment(lexer);
  }
  return false;
}
