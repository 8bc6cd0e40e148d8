module hx-backup/bench/stub-sshd

go 1.25.11

require golang.org/x/crypto v0.52.0

require (
	github.com/kr/fs v0.1.0 // indirect
	github.com/pkg/sftp v1.13.6 // indirect
	golang.org/x/sys v0.45.0 // indirect
)
