//! Test 7, the demo page in a real browser (added last; see the issue).
