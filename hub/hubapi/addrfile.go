package hubapi

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// AddrFile is the file in hubd's data directory that says where the hubd
// running on it listens, so a tool given only the data directory (auditq
// --data DIR) reaches that hubd rather than whichever answers on the
// default address. hubd writes it once it listens and removes it when it
// stops; after a crash it stays, so it is only a hint: the ledger's file
// lock says whether a hubd runs on the directory.
const AddrFile = "hubd.addr"

// WriteAddrFile writes dir/hubd.addr: the gRPC address and whether it
// serves TLS. The file appears whole (written aside, then renamed).
func WriteAddrFile(dir, grpcAddr string, tls bool) error {
	f, err := os.CreateTemp(dir, ".hubd.addr-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	_, err = fmt.Fprintf(f, "# where the hubd running on this data directory listens (removed when it stops)\ngrpc %s\ntls %t\n", grpcAddr, tls)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), filepath.Join(dir, AddrFile))
	}
	return err
}

// RemoveAddrFile removes dir/hubd.addr; a missing file is no error.
func RemoveAddrFile(dir string) error {
	if err := os.Remove(filepath.Join(dir, AddrFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// ReadAddrFile reads dir/hubd.addr.
func ReadAddrFile(dir string) (grpcAddr string, tls bool, err error) {
	b, err := os.ReadFile(filepath.Join(dir, AddrFile))
	if err != nil {
		return "", false, err
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		k, v, _ := strings.Cut(strings.TrimSpace(sc.Text()), " ")
		switch k {
		case "grpc":
			grpcAddr = v
		case "tls":
			tls = v == "true"
		}
	}
	if grpcAddr == "" {
		return "", false, fmt.Errorf("%s names no address", filepath.Join(dir, AddrFile))
	}
	return grpcAddr, tls, nil
}
