import * as Schema from "effect/Schema"
import { VmEvent } from "../VmEvent.ts"

const encodeEvent = Schema.encodeSync(VmEvent)

/**
 * One event as one line of JSON, in the schema's encoded form (bytes as a number
 * array), `_tag` first so a reader of `vmrr dump` sees the kind before the fields.
 * Throws a ParseError for a value that is not a valid event.
 */
export const eventToJson = (event: VmEvent): string => {
  // Schema encoding already yields `_tag` first; rebuilding makes it not depend on that.
  const { _tag, ...fields } = encodeEvent(event)
  return JSON.stringify({ _tag, ...fields })
}
