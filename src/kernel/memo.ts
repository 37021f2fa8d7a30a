/**
 * `f` remembering its last argument and result. Chip states are immutable values, so
 * the same state object always gives the same answer: a question asked before every
 * VM entry (the next timer deadline, the pending vector) is computed once per state.
 */
export const memoLast = <S extends object, R>(f: (state: S) => R): ((state: S) => R) => {
  let last: S | undefined
  let result: R
  return (state) => {
    if (state !== last) {
      result = f(state)
      last = state
    }
    return result
  }
}
