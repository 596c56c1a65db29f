"""The dead-code rules, one per module; `RULES` lists them in report order."""

from codegen.quality.rules.constant_condition import ConstantCondition
from codegen.quality.rules.unreachable_branch import UnreachableBranch
from codegen.quality.rules.unread_field import UnreadField
from codegen.quality.rules.unused_definition import UnusedDefinition

RULES = (ConstantCondition, UnreachableBranch, UnreadField, UnusedDefinition)
