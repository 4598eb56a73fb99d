package billing

// ParseEvent is parseEvent, for the benchmarks.
var ParseEvent = parseEvent
