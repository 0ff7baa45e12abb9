/**
 * @file Tree-sitter grammar for `.apt`, the policy language of aptc.
 * @license Apache-2.0
 *
 * It follows docs/grammar.ebnf (normative) and docs/language.md, and is more permissive where an
 * editor grammar must cope with code being typed, or where aptc checks after parsing:
 *
 * - keywords are contextual: a keyword where no keyword can stand is an identifier, so
 *   `service test { … }` parses (aptc reports APT0004 there);
 * - an unclosed block comment runs to the end of the file (aptc: APT0003);
 * - integer ranges (APT0006) and what a block must or may contain (APT01xx) are not checked;
 * - `;` may also begin a block.
 *
 * Invalid characters, unterminated strings, invalid escapes, malformed interpolations and chained
 * comparisons are errors, as in aptc. The policy-test syntax (`test NAME { claim … user …
 * expect … }`) follows aptc's parser of it; see test/corpus/tests.txt.
 */

/// <reference types="tree-sitter-cli/dsl" />
// @ts-check

const PREC = {
  or: 1,
  and: 2,
  not: 3,
  compare: 4,
  negate: 5,
};

/**
 * One or more `rule`, separated by commas, with an optional trailing comma.
 * @param {RuleOrLiteral} rule
 */
const commaSep1Trailing = (rule) => seq(rule, repeat(seq(',', rule)), optional(','));

/**
 * A `{ … }` block of `statements`; `;` may follow any statement.
 * @param {RuleOrLiteral[]} statements
 */
const block = (...statements) => seq('{', repeat(choice(...statements, ';')), '}');

module.exports = grammar({
  name: 'apt',

  word: ($) => $.identifier,

  extras: ($) => [/[\s\uFEFF]/, $.line_comment, $.doc_comment, $.block_comment],

  externals: ($) => [
    $.string_content,
    $.block_comment,
    // Never produced: valid only during error recovery, which the scanner detects with it.
    $._error_sentinel,
  ],

  supertypes: ($) => [$._item, $._expression, $._type],

  rules: {
    source_file: ($) => repeat(choice($._item, ';')),

    _item: ($) =>
      choice(
        $.namespace_declaration,
        $.import_declaration,
        $.label_declaration,
        $.service_declaration,
        $.contract_declaration,
        $.rule_declaration,
        $.cluster_declaration,
        $.claim_declaration,
        $.user_declaration,
        $.team_declaration,
        $.users_from_declaration,
        $.grant_declaration,
        $.function_declaration,
        $.test_declaration,
        $.assert_declaration,
      ),

    // ---------------------------------------------------------------- lexical

    // `//` but not `///`; `////…` is a plain comment again.
    line_comment: (_) => token(choice(seq('//', optional(/[^/\n][^\n]*/)), seq('////', /[^\n]*/))),
    doc_comment: (_) => token(seq('///', optional(/[^/\n][^\n]*/))),

    identifier: (_) => /[A-Za-z_][A-Za-z0-9_]*(-[A-Za-z0-9_]+)*/,
    integer: (_) => /[0-9][0-9_]*/,

    string: ($) =>
      seq('"', repeat(choice($.string_content, $.escape_sequence, $.interpolation)), token.immediate('"')),
    escape_sequence: (_) => token.immediate(/\\["\\ntr$]/),
    interpolation: ($) => seq(token.immediate('${'), field('expression', $._expression), '}'),

    // ---------------------------------------------------------------- items

    namespace_declaration: ($) =>
      seq('namespace', field('name', $.identifier), optional(seq('owned_by', field('owner', $.identifier)))),

    // import NS | import NS.NAME | import NS.{A, B} | … as ALIAS
    import_declaration: ($) =>
      seq(
        'import',
        field('namespace', $.identifier),
        repeat(seq('.', field('name', $.identifier))),
        optional(seq('.', field('names', $.import_list))),
        optional(seq('as', field('alias', $.identifier))),
      ),
    import_list: ($) => seq('{', optional(commaSep1Trailing($.identifier)), '}'),

    label_declaration: ($) =>
      seq(
        'label',
        field('name', $.identifier),
        ':',
        field('type', $._type),
        optional(seq('=', field('default', $._expression))),
      ),

    _type: ($) => choice(alias($.identifier, $.type_identifier), $.enum_type, $.list_type),
    enum_type: ($) => seq($.string, repeat(seq('|', $.string))),
    list_type: ($) => seq('[', field('element', $._type), ']'),

    service_declaration: ($) => seq('service', field('name', $.identifier), field('body', $.service_body)),
    service_body: ($) => block($.component_declaration),

    component_declaration: ($) =>
      seq(
        'component',
        field('name', $.identifier),
        choice(
          seq('uses', field('contract', $.path)),
          seq('chart', field('chart', $.string)),
          seq('manifests', field('manifests', $.string)),
        ),
        optional(field('body', $.component_body)),
      ),
    component_body: ($) =>
      block(
        $.repo_statement,
        $.version_statement,
        $.when_statement,
        $.after_statement,
        $.values_statement,
        $.discovery_statement,
      ),
    repo_statement: ($) => seq('repo', field('url', $.string)),
    version_statement: ($) => seq('version', field('version', $.string)),
    when_statement: ($) => seq('when', field('condition', $._expression)),
    after_statement: ($) => seq('after', field('component', $.identifier), repeat(seq(',', field('component', $.identifier)))),
    values_statement: ($) => seq('values', field('values', $.map)),
    discovery_statement: ($) => seq('discovery', field('values', $.map)),

    contract_declaration: ($) => seq('contract', field('name', $.identifier), field('body', $.contract_body)),
    contract_body: ($) => block($.set_statement, $.remove_statement, $.context_declaration),

    context_declaration: ($) =>
      seq(
        'context',
        field('name', $.identifier),
        optional(seq('when', field('condition', $._expression))),
        field('body', $.context_body),
      ),
    context_body: ($) => block($.set_statement, $.remove_statement, $.allocate_statement, $.use_statement),

    set_statement: ($) => seq('set', 'labels', '.', field('label', $.identifier), '=', field('value', $._expression)),
    remove_statement: ($) => seq('remove', 'labels', '.', field('label', $.identifier)),
    allocate_statement: ($) =>
      seq('allocate', 'per', field('key', $._expression), repeat(seq(',', field('key', $._expression)))),
    use_statement: ($) => seq('use', field('service', $.path)),

    rule_declaration: ($) =>
      seq(
        'rule',
        field('name', $.identifier),
        optional(seq('weight', field('weight', $.integer))),
        optional(seq('when', field('condition', $._expression))),
        field('body', $.rule_body),
      ),
    rule_body: ($) => block($.set_statement, $.remove_statement, $.reject_statement, $.place_statement),
    reject_statement: ($) => seq('reject', field('message', $.string)),
    place_statement: ($) =>
      seq('place', 'on', field('cluster', $.path), optional(seq('namespace', field('namespace', $._expression)))),

    cluster_declaration: ($) => seq('cluster', field('name', $.identifier), field('body', $.cluster_body)),
    cluster_body: ($) => block($.context_statement, $.kubeconfig_statement, $.namespace_statement, $.labels_statement),
    context_statement: ($) => seq('context', field('context', $.string)),
    kubeconfig_statement: ($) =>
      seq(
        'kubeconfig',
        choice(
          field('path', $.string),
          seq('secret', field('secret', $.string), optional(seq('key', field('key', $.string)))),
          'in_cluster',
        ),
      ),
    namespace_statement: ($) => seq('namespace', field('namespace', $.string)),
    labels_statement: ($) => seq('labels', field('labels', $.map)),

    claim_declaration: ($) => seq('claim', field('name', $.identifier), field('body', $.claim_body)),
    claim_body: ($) => block($.user_statement, $.team_statement, $.contract_statement, $.labels_statement),
    user_statement: ($) => seq('user', field('user', $.string)),
    team_statement: ($) => seq('team', field('team', $.identifier)),
    contract_statement: ($) => seq('contract', field('contract', $.path)),

    user_declaration: ($) => seq('user', field('name', $.string), optional(field('body', $.user_body))),
    user_body: ($) => block($.team_statement, $.groups_statement, $.labels_statement),
    groups_statement: ($) => seq('groups', field('groups', $.list)),

    team_declaration: ($) => seq('team', field('name', $.identifier), optional(field('body', $.team_body))),
    team_body: ($) => block($.labels_statement),

    users_from_declaration: ($) => seq('users', 'from', field('path', $.string)),

    grant_declaration: ($) =>
      seq(
        'grant',
        field('role', $.identifier),
        optional(
          seq(
            'on',
            choice(
              field('namespaces', alias('*', $.wildcard)),
              seq(field('namespaces', $.identifier), repeat(seq(',', field('namespaces', $.identifier)))),
            ),
          ),
        ),
        optional(seq('when', field('condition', $._expression))),
      ),

    function_declaration: ($) =>
      seq(
        'fn',
        field('name', $.identifier),
        field('parameters', $.parameter_list),
        '->',
        field('return_type', $._type),
      ),
    parameter_list: ($) => seq('(', optional(commaSep1Trailing($.parameter)), ')'),
    parameter: ($) => seq(field('name', $.identifier), ':', field('type', $._type)),

    // ---------------------------------------------------------------- tests (aptc test)

    test_declaration: ($) => seq('test', field('name', $.identifier), field('body', $.test_body)),
    test_body: ($) => block($.claim_declaration, $.user_declaration, $.expect_statement),
    expect_statement: ($) =>
      seq(
        'expect',
        choice(
          seq(
            'claim',
            field('claim', $.path),
            choice(
              field('outcome', 'resolved'),
              seq(field('outcome', 'rejected'), optional(seq('matches', field('pattern', $.string)))),
            ),
          ),
          seq('instance', field('component', $.path), 'for', field('claim', $.path), optional(field('body', $.expect_body))),
          seq('no', 'instance', field('component', $.path), 'for', field('claim', $.path)),
          seq('instances', field('count', $.integer)),
        ),
      ),
    expect_body: ($) =>
      block(
        alias($.expect_context_statement, $.context_statement),
        alias($.expect_cluster_statement, $.cluster_statement),
        $.namespace_statement,
        $.values_statement,
      ),
    expect_context_statement: ($) => seq('context', field('context', $.identifier)),
    expect_cluster_statement: ($) => seq('cluster', field('cluster', $.path)),

    // ---------------------------------------------------------------- assertions (aptc verify)

    assert_declaration: ($) => seq('assert', field('name', $.identifier), field('body', $.assert_body)),
    assert_body: ($) => block($.for_statement, $.when_statement, $.assertion_statement),
    for_statement: ($) =>
      seq(
        'for',
        choice(
          seq('user', field('user', $.string)),
          seq('users', 'in', choice(seq('team', field('team', $.identifier)), seq('group', field('group', $.string)))),
          seq('team', field('team', $.identifier)),
          seq('contract', field('contract', $.path)),
        ),
      ),
    assertion_statement: ($) =>
      seq(
        'expect',
        choice(
          field('outcome', choice('resolved', 'rejected', 'failed')),
          seq('placed', 'on', field('cluster', $.path), repeat(seq(',', field('cluster', $.path)))),
          seq(optional('never'), 'reaches', field('target', $.path)),
          seq(
            optional('never'),
            'shares',
            'with',
            choice(seq('user', field('user', $.string)), seq('team', field('team', $.identifier)), 'others'),
          ),
          seq('that', field('condition', $._expression)),
        ),
      ),

    // ---------------------------------------------------------------- references

    // An object reference: `kafka`, `platform.kafka` (and `ns.contract.component` in tests).
    path: ($) => seq($.identifier, repeat(seq('.', $.identifier))),

    // ---------------------------------------------------------------- expressions

    _expression: ($) =>
      choice($.binary_expression, alias($.not_operation, $.unary_expression), $.comparison_expression, $._operand),

    binary_expression: ($) =>
      choice(
        prec.left(PREC.or, seq(field('left', $._expression), field('operator', 'or'), field('right', $._expression))),
        prec.left(PREC.and, seq(field('left', $._expression), field('operator', 'and'), field('right', $._expression))),
      ),

    // `not a == b` is `not (a == b)`.
    not_operation: ($) => prec(PREC.not, seq(field('operator', 'not'), field('operand', $._expression))),

    // Comparisons do not chain (`a == b == c` is an error): their operands are operands.
    comparison_expression: ($) =>
      prec(
        PREC.compare,
        seq(
          field('left', $._operand),
          field('operator', choice('==', '!=', '<', '<=', '>', '>=', 'in', seq('not', 'in'), 'matches')),
          field('right', $._operand),
        ),
      ),

    _operand: ($) =>
      choice(
        alias($.negation, $.unary_expression),
        $.integer,
        $.string,
        $.true,
        $.false,
        $.list,
        $.map,
        $.call_expression,
        $.path_expression,
        $.parenthesized_expression,
      ),
    negation: ($) => prec(PREC.negate, seq(field('operator', '-'), field('operand', $._operand))),

    true: (_) => 'true',
    false: (_) => 'false',

    // `labels.env`, `user.name`, `kafka.discovery.url`: the head, then fields.
    path_expression: ($) => seq(field('head', $.identifier), repeat(seq('.', field('field', $.identifier)))),

    call_expression: ($) => seq(field('function', $.identifier), field('arguments', $.argument_list)),
    argument_list: ($) => seq('(', optional(commaSep1Trailing($._expression)), ')'),

    parenthesized_expression: ($) => seq('(', $._expression, ')'),

    list: ($) => seq('[', optional(commaSep1Trailing($._expression)), ']'),

    // Entries are separated by commas, which may be left out.
    map: ($) => seq('{', repeat(seq($.map_entry, optional(','))), '}'),
    map_entry: ($) => seq(field('key', choice($.identifier, $.string)), '=', field('value', $._expression)),
  },
});
