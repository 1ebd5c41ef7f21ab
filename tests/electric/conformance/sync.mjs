// Electric's own TypeScript client (@electric-sql/client) follows one shape
// of the scripted Electric (tests/electric) and prints what it holds, one
// line per change of state, for electric_client_conformance_test to compare
// with PostgreSQL:
//   state <JSON rows>   after every up-to-date that changed the rows
//   must-refetch        when the server told it to start over
//   error <message>     on any error (the test fails on it)
// Usage: node sync.mjs <electric base url> <table> <columns>
import { ShapeStream, Shape, isChangeMessage, isControlMessage } from '@electric-sql/client'

const [url, table, columns] = process.argv.slice(2)
if (!url || !table || !columns) {
  console.log('error usage: node sync.mjs <url> <table> <columns>')
  process.exit(2)
}

const stream = new ShapeStream({
  url: `${url}/v1/shape`,
  params: { table, columns: columns.split(','), replica: 'full' },
  // Any error ends the check: the peer must behave like Electric.
  onError: (error) => {
    console.log(`error ${error?.name ?? ''}: ${error?.message ?? error}`)
    process.exit(1)
  },
})

let changes = 0
stream.subscribe(
  (messages) => {
    for (const message of messages) {
      if (isControlMessage(message) && message.headers.control === 'must-refetch') {
        console.log('must-refetch')
      } else if (isChangeMessage(message)) {
        changes += 1
      }
    }
  },
  (error) => {
    console.log(`error ${error?.name ?? ''}: ${error?.message ?? error}`)
    process.exit(1)
  },
)

// The materialised rows, in id order, as [id, subscriber_url, source_url,
// timeout_consumed] text.
const shape = new Shape(stream)
let last = ''
shape.subscribe(({ rows }) => {
  const state = rows
    .map((row) => [String(row.id), row.subscriber_url, row.source_url, String(row.timeout_consumed)])
    .sort((a, b) => Number(a[0]) - Number(b[0]))
  const line = JSON.stringify(state)
  if (line !== last) {
    last = line
    console.log(`state ${line}`)
  }
})

process.on('SIGTERM', () => {
  console.log(`done changes=${changes}`)
  process.exit(0)
})
