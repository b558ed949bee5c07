"""Time-to-limit forecasts (issue 14): a robust trend on each limited signal's levels, the time
it crosses its limit with an 80 % interval, and the `predicted` alert lifecycle. Pure: no I/O,
no clock; time comes with the samples."""
