; Highlights for .apt. Capture names follow nvim-treesitter's conventions; the tree-sitter CLI
; (`tree-sitter highlight`) understands them too. Where several patterns capture one node, the
; last one wins, as in Neovim and tree-sitter-highlight; the general patterns come first.

; ---------------------------------------------------------------- comments

(line_comment) @comment
(block_comment) @comment
(doc_comment) @comment.documentation

; ---------------------------------------------------------------- literals

(string) @string
(escape_sequence) @string.escape
(interpolation "${" @punctuation.special)
(integer) @number
[(true) (false)] @boolean

; ---------------------------------------------------------------- keywords

[
  "namespace"
  "label"
  "service"
  "component"
  "contract"
  "context"
  "rule"
  "cluster"
  "claim"
  "user"
  "users"
  "team"
  "grant"
  "test"
  "assert"
] @keyword

"fn" @keyword.function

["import" "as"] @keyword.import

"when" @keyword.conditional

[
  "owned_by"
  "uses"
  "chart"
  "manifests"
  "repo"
  "version"
  "after"
  "values"
  "discovery"
  "set"
  "remove"
  "allocate"
  "per"
  "use"
  "weight"
  "reject"
  "place"
  "on"
  "kubeconfig"
  "secret"
  "key"
  "in_cluster"
  "from"
  "groups"
  "expect"
  "resolved"
  "rejected"
  "instance"
  "instances"
  "no"
  "for"
  "group"
  "failed"
  "placed"
  "reaches"
  "shares"
  "never"
  "with"
  "others"
  "that"
] @keyword

; `labels { … }` is a statement; in `set labels.KEY` it is the label set being changed.
(labels_statement "labels" @keyword)
(set_statement "labels" @variable.builtin)
(remove_statement "labels" @variable.builtin)

["and" "or" "not" "in" "matches"] @keyword.operator

; ---------------------------------------------------------------- operators and punctuation

["==" "!=" "<" "<=" ">" ">=" "-" "=" "->" "|"] @operator
(wildcard) @character.special

["{" "}" "[" "]" "(" ")"] @punctuation.bracket
["," ";" ":" "."] @punctuation.delimiter

; ---------------------------------------------------------------- types

((type_identifier) @type.builtin
  (#any-of? @type.builtin "string" "int" "bool" "any"))
((type_identifier) @type
  (#not-any-of? @type "string" "int" "bool" "any"))

; ---------------------------------------------------------------- declarations

(namespace_declaration name: (identifier) @module)
(namespace_declaration owner: (identifier) @type)
(import_declaration namespace: (identifier) @module)
(import_declaration name: (identifier) @type)
(import_list (identifier) @type)
(import_declaration alias: (identifier) @module)

(label_declaration name: (identifier) @variable.member)

(service_declaration name: (identifier) @type.definition)
(component_declaration name: (identifier) @type.definition)
(contract_declaration name: (identifier) @type.definition)
(context_declaration name: (identifier) @label)
(rule_declaration name: (identifier) @type.definition)
(cluster_declaration name: (identifier) @type.definition)
(claim_declaration name: (identifier) @type.definition)
(team_declaration name: (identifier) @type.definition)
(test_declaration name: (identifier) @function)
(assert_declaration name: (identifier) @function)
(grant_declaration role: (identifier) @constant.builtin)
(grant_declaration namespaces: (identifier) @module)

(function_declaration name: (identifier) @function)
(parameter name: (identifier) @variable.parameter)

; ---------------------------------------------------------------- references

; `platform.kafka`: a namespace, then the object.
(path (identifier) @module ".")
(path (identifier) @type .)

(after_statement component: (identifier) @type)
(team_statement team: (identifier) @type)
(context_statement context: (identifier) @label)

(set_statement label: (identifier) @variable.member)
(remove_statement label: (identifier) @variable.member)

; ---------------------------------------------------------------- expressions

((path_expression head: (identifier) @variable.builtin)
  (#any-of? @variable.builtin "labels" "user" "claim" "cluster" "instance" "values"))
((path_expression head: (identifier) @variable)
  (#not-any-of? @variable "labels" "user" "claim" "cluster" "instance" "values"))
(path_expression field: (identifier) @property)

; The key after `labels.` (also `user.labels.KEY`, `cluster.labels.KEY`) is a label. These
; override the pattern above, and capture `labels` itself under the name it has anyway.
((path_expression head: (identifier) @variable.builtin . field: (identifier) @variable.member)
  (#eq? @variable.builtin "labels"))
((path_expression field: (identifier) @property . field: (identifier) @variable.member)
  (#eq? @property "labels"))

((call_expression function: (identifier) @function.builtin)
  (#any-of? @function.builtin
    "lower" "upper" "trim" "trim_prefix" "trim_suffix" "starts_with" "ends_with" "contains"
    "replace" "split" "join" "len" "default" "to_string" "to_int" "truncate" "hash"
    "secret_env" "secret_file" "secret_k8s"))
((call_expression function: (identifier) @function.call)
  (#not-any-of? @function.call
    "lower" "upper" "trim" "trim_prefix" "trim_suffix" "starts_with" "ends_with" "contains"
    "replace" "split" "join" "len" "default" "to_string" "to_int" "truncate" "hash"
    "secret_env" "secret_file" "secret_k8s"))

(map_entry key: (identifier) @property)
