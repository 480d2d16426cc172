// Package pathtrace measures which of Writ's source files and packages one
// auto-approved request runs through, from the requester's submit to its
// grant read back. Its test does the measuring, and runs only when asked
// (WRIT_PATHTRACE=1 and a coverage build: see the test's comment); the
// figures it prints are the ones issue notes quote.
package pathtrace
