; Scopes, definitions and references, for the tree-sitter CLI and nvim-treesitter's locals
; module (go to definition within a file, highlighting a name's uses). Names in .apt are
; declared at the top level of a file, per kind; components are scoped to their service,
; contexts to their contract.

(source_file) @local.scope
(service_body) @local.scope
(contract_body) @local.scope
(test_body) @local.scope

(namespace_declaration name: (identifier) @local.definition.namespace)
(import_declaration alias: (identifier) @local.definition.import)
(import_list (identifier) @local.definition.import)
(label_declaration name: (identifier) @local.definition.var)
(service_declaration name: (identifier) @local.definition.type)
(component_declaration name: (identifier) @local.definition.field)
(contract_declaration name: (identifier) @local.definition.type)
(context_declaration name: (identifier) @local.definition.type)
(rule_declaration name: (identifier) @local.definition.type)
(cluster_declaration name: (identifier) @local.definition.type)
(claim_declaration name: (identifier) @local.definition.type)
(team_declaration name: (identifier) @local.definition.type)
(test_declaration name: (identifier) @local.definition.function)
(assert_declaration name: (identifier) @local.definition.function)
(function_declaration name: (identifier) @local.definition.function)
(parameter name: (identifier) @local.definition.parameter)

(path (identifier) @local.reference)
(after_statement component: (identifier) @local.reference)
(team_statement team: (identifier) @local.reference)
(namespace_declaration owner: (identifier) @local.reference)
(set_statement label: (identifier) @local.reference)
(remove_statement label: (identifier) @local.reference)
(path_expression head: (identifier) @local.reference)
(call_expression function: (identifier) @local.reference)
