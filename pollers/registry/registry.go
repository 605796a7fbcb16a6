// Package registry maps vendor names from configuration to the vendor
// packages that build their pollers. It is the one place that knows every
// vendor.
package registry

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/jobbridge/jobbridge/bridge"
	"github.com/jobbridge/jobbridge/bridge/config"
	"github.com/jobbridge/jobbridge/pollers/arcgis"
	"github.com/jobbridge/jobbridge/pollers/helix"
	"github.com/jobbridge/jobbridge/pollers/hmc"
	"github.com/jobbridge/jobbridge/pollers/huawei"
	"github.com/jobbridge/jobbridge/pollers/pollkit"
	"github.com/jobbridge/jobbridge/pollers/tso"
)

// factory returns the vendor's factory; a switch, so that no mutable
// package state holds the table.
func factory(vendor string) (pollkit.Factory, bool) {
	switch vendor {
	case tso.Vendor:
		return tso.FromConfig, true
	case helix.Vendor:
		return helix.FromConfig, true
	case hmc.Vendor:
		return hmc.FromConfig, true
	case huawei.Vendor:
		return huawei.FromConfig, true
	case arcgis.Vendor:
		return arcgis.FromConfig, true
	}
	return nil, false
}

// Vendors lists the vendors this build can poll.
func Vendors() []string {
	var out []string
	for _, v := range config.Vendors() {
		if _, ok := factory(v); ok {
			out = append(out, v)
		}
	}
	slices.Sort(out)
	return out
}

// Build turns every configured instance into a bridge.Instance, reporting
// every broken instance at once.
func Build(ctx context.Context, instances []config.Instance, deps pollkit.Deps) ([]bridge.Instance, error) {
	var out []bridge.Instance
	var errs []error
	for _, inst := range instances {
		f, ok := factory(inst.Vendor)
		if !ok {
			errs = append(errs, fmt.Errorf("instance %s: vendor %q is not supported by this build (supported: %v)", inst.Name, inst.Vendor, Vendors()))
			continue
		}
		bi, err := f(ctx, inst, deps)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, bi)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return out, nil
}

// InitialWatches lists the jobs the configuration names.
func InitialWatches(instances []config.Instance) []bridge.Watch {
	var out []bridge.Watch
	for _, inst := range instances {
		for _, id := range inst.Jobs {
			out = append(out, bridge.Watch{Vendor: inst.Vendor, Instance: inst.Name, Job: id, Origin: "config"})
		}
	}
	return out
}
