package redisstore

import (
	"os"

	"github.com/cordon-gw/cordon/categorizer"
)

func parseFile(path string, emit func(categorizer.Entry)) (categorizer.ParseStats, error) {
	f, err := os.Open(path)
	if err != nil {
		return categorizer.ParseStats{}, err
	}
	defer f.Close()
	return categorizer.ParseHosts(path, f, emit)
}
