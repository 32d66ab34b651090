/// An expression inside a tag.
indirect enum TemplateExpression {
    case literal(TemplateValue)
    case variable(String, SourcePosition)
    case list([TemplateExpression])
    case tuple([TemplateExpression])
    case dictionary([(TemplateExpression, TemplateExpression)], SourcePosition)
    /// `a.b`: jinja2 tries the Python attribute (a method), then the key. `a['b']` is `.item`.
    case attribute(TemplateExpression, String, SourcePosition)
    case item(TemplateExpression, TemplateExpression, SourcePosition)
    case slice(TemplateExpression, start: TemplateExpression?, stop: TemplateExpression?, step: TemplateExpression?, SourcePosition)
    case call(TemplateExpression, CallArguments, SourcePosition)
    case filter(TemplateExpression, String, CallArguments, SourcePosition)
    case test(TemplateExpression, String, negated: Bool, CallArguments, SourcePosition)
    case not(TemplateExpression)
    case negate(TemplateExpression, SourcePosition)
    case binary(String, TemplateExpression, TemplateExpression, SourcePosition)
    case and(TemplateExpression, TemplateExpression)
    case or(TemplateExpression, TemplateExpression)
    case conditional(value: TemplateExpression, condition: TemplateExpression, otherwise: TemplateExpression?)
}

/// Positional and keyword arguments of a call, filter or test.
struct CallArguments {
    var positional: [TemplateExpression] = []
    var keyword: [(String, TemplateExpression)] = []
}

/// Where `{% set %}` writes: a variable, a namespace attribute, or several variables unpacked.
enum AssignmentTarget {
    case name(String)
    case attribute(String, String)
    case names([String])
}

/// A node of the parsed template.
indirect enum TemplateNode {
    case text(String)
    case output(TemplateExpression, SourcePosition)
    case conditional(branches: [(TemplateExpression, [TemplateNode])], otherwise: [TemplateNode])
    case loop(targets: [String], iterable: TemplateExpression, filter: TemplateExpression?,
              body: [TemplateNode], otherwise: [TemplateNode], SourcePosition)
    case assign(AssignmentTarget, TemplateExpression, SourcePosition)
    case assignBlock(String, [TemplateNode])
    case macro(name: String, parameters: [(String, TemplateExpression?)], body: [TemplateNode])
    case breakLoop
    case continueLoop
    /// transformers' `{% generation %}` extension: marks assistant text, renders its body.
    case group([TemplateNode])
}
