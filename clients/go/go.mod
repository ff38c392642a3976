module opentokend.local/opentoken

go 1.19
