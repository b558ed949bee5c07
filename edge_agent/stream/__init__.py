"""Pure stream stages: assembler → windows → normalize. No I/O, no clocks."""
