"""pgcourse: the code the course notebooks derive once and import afterwards."""
